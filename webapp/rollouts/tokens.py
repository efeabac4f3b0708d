"""Reads for the token view of one completion: each token with its recorded per-token values
(log-prob, entropy, advantage, KL, and some algorithms' own: PRL's process term, GTPO's conflict
tokens, KDRL's KL to the teacher), and the colour scales the view shades tokens by."""

from __future__ import annotations

import math
from dataclasses import dataclass

from webapp.runs.selectors import token_rows


@dataclass(frozen=True)
class TokenQuantity:
    """A per-token quantity the token view can colour by, and its colour scale: `bins` are the
    lower bounds of the colour steps after the first, `classes` one CSS class per step."""

    key: str
    label: str
    bins: tuple[float, ...]
    classes: tuple[str, ...]
    legend: tuple[str, ...]
    explanation: str

    def css_class(self, row: dict) -> str:
        """
        >>> ENTROPY.css_class({"entropy": 0.1}), ENTROPY.css_class({"entropy": 0.7})
        ('shade-0', 'shade-2')
        >>> ADVANTAGE.css_class({"advantage": -1.5}), ADVANTAGE.css_class({"advantage": 3.0})
        ('adv-neg-3', 'adv-pos-4')
        >>> KL.css_class({"kl": None})
        'shade-none'
        """
        value = row[self.key]
        if value is None or not math.isfinite(value):
            return "shade-none"
        return self.classes[sum(value >= bound for bound in self.bins)]

    def legend_rows(self) -> list[tuple[str, str]]:
        return list(zip(self.classes, self.legend))


class LogProbQuantity(TokenQuantity):
    def css_class(self, row: dict) -> str:
        """token_rows' shade: 1 - p in steps of 0.2, the page's colouring from the start."""
        return "shade-none" if row["logprob"] is None else f"shade-{row['shade']}"


SEQUENTIAL = ("shade-0", "shade-1", "shade-2", "shade-3", "shade-4")
LOGPROB = LogProbQuantity(
    "logprob", "log-prob", (), SEQUENTIAL,
    ("p ≥ 0.8", "0.6 – 0.8", "0.4 – 0.6", "0.2 – 0.4", "p < 0.2"),
    "the policy's probability of the token it sampled: darker was less likely")
ENTROPY = TokenQuantity(
    "entropy", "entropy", (0.25, 0.5, 1.0, 2.0), SEQUENTIAL,
    ("< 0.25", "0.25 – 0.5", "0.5 – 1", "1 – 2", "≥ 2 nats"),
    "the policy's uncertainty over the next token, in nats: darker was more uncertain")
KL = TokenQuantity(
    "kl", "KL to the reference", (0.01, 0.05, 0.2, 0.5), SEQUENTIAL,
    ("< 0.01", "0.01 – 0.05", "0.05 – 0.2", "0.2 – 0.5", "≥ 0.5"),
    "the per-token estimate of KL between the policy and the reference: darker has moved "
    "further")
ADVANTAGE = TokenQuantity(
    "advantage", "advantage", (-2.0, -1.0, -0.5, -0.1, 0.1, 0.5, 1.0, 2.0),
    ("adv-neg-4", "adv-neg-3", "adv-neg-2", "adv-neg-1", "adv-0", "adv-pos-1", "adv-pos-2",
     "adv-pos-3", "adv-pos-4"),
    ("< −2", "−2 – −1", "−1 – −0.5", "−0.5 – −0.1", "about 0", "0.1 – 0.5", "0.5 – 1", "1 – 2",
     "≥ 2"),
    "the advantage the update gave the token, diverging around 0: red was pushed down, blue "
    "pushed up")
PROCESS = TokenQuantity(
    "process", "PRL process term", (-1.0, -0.3, -0.1, -0.01, 0.01, 0.1, 0.3, 1.0),
    ADVANTAGE.classes,
    ("< −1", "−1 – −0.3", "−0.3 – −0.1", "−0.1 – −0.01", "about 0", "0.01 – 0.1", "0.1 – 0.3",
     "0.3 – 1", "≥ 1"),
    "PRL's process term of the advantage, −(1/η) × the log-ratio to the reference from the end "
    "of the token's step on: red steps drifted from the reference and were held back")
CONFLICT = TokenQuantity(
    "conflict", "GTPO conflict tokens", (0.5,), ("shade-0", "conflict"),
    ("not in conflict", "conflict token"),
    "GTPO's conflict tokens, the same token at the same place in a better and a worse "
    "completion of the group: never pushed down, pushed up × w")
TEACHER_KL = TokenQuantity(
    "teacher_kl", "KL to the teacher", KL.bins, SEQUENTIAL, KL.legend,
    "KDRL: the per-token estimate of KL between the policy and the teacher: darker is further "
    "from the teacher")
TOKEN_QUANTITIES = {q.key: q for q in (LOGPROB, ENTROPY, ADVANTAGE, KL, PROCESS, CONFLICT,
                                       TEACHER_KL)}


@dataclass
class TokenView:
    rows: list[dict]
    quantities: list[TokenQuantity]  # those recorded for this completion
    colour: TokenQuantity | None


def token_view(token_data: dict | None, colour: str | None = None) -> TokenView:
    """The token view of one completion: each token's values (token_rows), those recorded
    (`readings`), its colour class under every recorded quantity (`classes`) and under the
    chosen one (`css_class`); log-prob when `colour` is not one of the recorded quantities."""
    rows = token_rows(token_data)
    quantities = [q for q in TOKEN_QUANTITIES.values()
                  if any(row[q.key] is not None for row in rows)]
    chosen = next((q for q in quantities if q.key == colour), quantities[0] if quantities else None)
    for row in rows:
        # A token that only breaks the line has no width to hover: the page marks it.
        row["line_break"] = "\n" in row["text"] and not row["text"].strip()
        row["readings"] = {q.key: row[q.key] for q in quantities if row[q.key] is not None}
        row["title"] = " · ".join(f"{q.label} {row[q.key]:.4f}" for q in quantities
                                  if row[q.key] is not None)
        row["classes"] = {q.key: q.css_class(row) for q in quantities}
        row["css_class"] = row["classes"][chosen.key] if chosen else "shade-none"
    return TokenView(rows=rows, quantities=quantities, colour=chosen)
