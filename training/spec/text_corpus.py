"""Text corpora: unlabelled prose that reinforcement mid-training (training.algorithms.rmt)
turns into next-token questions, and the format, parser and rewards of those questions. No
torch here: the web app checks uploads with `passages_from_text`.

A corpus file is plain text (a name ending in .txt: passages are paragraphs, separated by blank
lines, their line breaks joined by spaces) or JSON lines with a "text" per line (each line one
passage: what the web app writes for a text-corpus dataset, whatever the upload was). A
passage's id is "#<line where it starts>", which decides its split (training.spec.tasks).

A question is a text prefix, cut where the tokenizer starts a token (the target), inside the
instruction of NEXT_TOKEN_PROMPT. The completion is a short reasoning, then the prediction
between <answer> and </answer>:

    The sentence lists what bakers need, so after "flour, water and" comes the last item.
    <answer>salt</answer>

The prediction is the content of the completion's last <answer>…</answer>, stripped of white
space; the truth is the target token as the tokenizer decodes it alone, stripped the same way
(" salt" -> "salt"). They must be equal, character for character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from training.spec.prompt_dataset import parse_json_lines, read_worker_file
from training.spec.tasks import RewardFunction, in_split

# name of a built-in corpus (a RunConfig task) -> its file, shipped with the package
BUILTIN_CORPORA = {"text_corpus": Path(__file__).parent / "data" / "corpus.txt"}
# A passage shorter than this carries too little text to predict from.
MIN_PASSAGE_CHARS = 20

# The instruction comes after the text, where small models follow it best.
NEXT_TOKEN_PROMPT = (
    "Here is the beginning of a text:\n\n{context}\n\nWhat is the next token, the word or "
    "piece of a word that comes right after its last character? Think briefly, then write "
    "only that token between <answer> and </answer>, for example <answer>the</answer>.")

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class CorpusFileError(ValueError):
    """A corpus file the trainer cannot use; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Passage:
    passage_id: str  # "#<line>": where it starts in its file
    text: str


def passages_from_text(text: str) -> list[Passage]:
    """Plain text's paragraphs: runs of non-blank lines, joined by single spaces; paragraphs
    shorter than MIN_PASSAGE_CHARS are left out.

    >>> [(p.passage_id, p.text) for p in passages_from_text(
    ...     "One line\\nwrapped here.\\n\\n\\n  Second  paragraph, long enough.\\n\\nx")]
    [('#1', 'One line wrapped here.'), ('#5', 'Second paragraph, long enough.')]
    """
    passages: list[Passage] = []
    lines: list[str] = []
    start = 0
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if line.strip():
            start = start or number
            lines.append(line)
            continue
        joined = " ".join(" ".join(lines).split())
        if len(joined) >= MIN_PASSAGE_CHARS:
            passages.append(Passage(f"#{start}", joined))
        lines, start = [], 0
    return passages


def passage_problem(text: Any) -> str | None:
    """Why a JSON line's "text" cannot be a passage, or None if it can."""
    if not isinstance(text, str):
        return "no \"text\"" if text is None else "its \"text\" is not a string"
    if "\x00" in text:
        return "its text contains a NUL character"
    if len(text.strip()) < MIN_PASSAGE_CHARS:
        return f"its text is shorter than {MIN_PASSAGE_CHARS} characters"
    return None


def load_text_corpus(path: str | Path) -> tuple[Passage, ...]:
    """The passages of a corpus file (plain text if its name ends in .txt, else JSON lines with
    a "text" each); CorpusFileError if it cannot be read or holds none."""
    shown = str(path)
    text = read_worker_file(path, CorpusFileError, "corpus", " as UTF-8 text")
    if "\x00" in text:
        raise CorpusFileError(f"The corpus file {shown!r} contains a NUL character: it is no "
                              f"text file.")
    if Path(path).suffix.lower() == ".txt":
        passages = passages_from_text(text)
    else:
        passages = _jsonl_passages(text, shown)
    if not passages:
        raise CorpusFileError(f"The corpus file {shown!r} holds no passage of at least "
                              f"{MIN_PASSAGE_CHARS} characters.")
    return tuple(passages)


def _jsonl_passages(text: str, shown: str) -> list[Passage]:
    passages, errors = parse_json_lines(text, _passage)
    if errors:
        raise CorpusFileError(f"The corpus file {shown!r} has errors (JSON lines, each with a "
                              f"\"text\"): " + "; ".join(errors))
    return passages


def _passage(number: int, row: dict[str, Any]) -> Passage:
    if problem := passage_problem(row.get("text")):
        raise ValueError(problem)
    return Passage(f"#{number}", " ".join(row["text"].split()))


def next_token_prompt(context: str) -> str:
    """The user message that asks for the token after `context`."""
    return NEXT_TOKEN_PROMPT.format(context=context)


def parse_prediction(completion: str) -> str | None:
    """The predicted token: the last <answer>…</answer>'s content, stripped; None when there is
    none or it is blank.

    >>> [parse_prediction(c) for c in ("so <answer> salt </answer>", "<answer>a</answer> <answer>b",
    ...                                "salt", "<answer>  </answer>")]
    ['salt', 'a', None, None]
    """
    found = _ANSWER.findall(completion)
    prediction = found[-1].strip() if found else ""
    return prediction or None


def next_token_match(prompts: list[Any], completions: list[str], *, next_token: list[str],
                     **columns: Any) -> list[float]:
    """1.0 where the completion's prediction is the true next token (both stripped), else 0.0.

    >>> next_token_match([""] * 4, ["<answer>salt</answer>", "<answer>Salt</answer>",
    ...                             "salt", "<answer>salt.</answer>"], next_token=["salt"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """
    return [1.0 if parse_prediction(c) == truth.strip() else 0.0
            for c, truth in zip(completions, next_token, strict=True)]


def length_reward(length: int, budget: float) -> float:
    """r_len(ℓ; B) = max(0, 1 − |ℓ − B| / B): a triangle over [0, 2B] that peaks at the budget.

    >>> [length_reward(n, 8.0) for n in (0, 4, 8, 12, 16, 20)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    return max(0.0, 1.0 - abs(length - budget) / budget)


def budget_length(prompts: list[Any], completions: list[str], *, next_token: list[str],
                  budget: list[float], completion_tokens: list[int],
                  **columns: Any) -> list[float]:
    """The length reward, earned by a correct prediction only: r_match · r_len(ℓ; B_t), with ℓ
    the completion's tokens (its end-of-sequence token included) and B_t the token budget of
    the step that asked (the example's `budget`).

    >>> budget_length([""] * 3, ["<answer>a</answer>"] * 2 + ["<answer>b</answer>"],
    ...               next_token=["a"] * 3, budget=[8.0] * 3, completion_tokens=[8, 12, 8])
    [1.0, 0.5, 0.0]
    """
    matched = next_token_match(prompts, completions, next_token=next_token)
    return [m * length_reward(n, b)
            for m, n, b in zip(matched, completion_tokens, budget, strict=True)]


@dataclass(frozen=True)
class TextCorpusTask:
    """A corpus as a run's data: its passages in `split`. Its questions are made at run time
    from the tokenizer and the proxy model's entropies (training.algorithms.rmt), so it lists
    passages, not examples. Reward: r = r_match + r_match · r_len(ℓ; B_t)."""

    source: str  # the corpus file
    split: str = "all"
    reward_functions: dict[str, RewardFunction] = field(
        default_factory=lambda: {"next_token": next_token_match, "length": budget_length})

    @cached_property
    def passages(self) -> tuple[Passage, ...]:
        passages = tuple(p for p in load_text_corpus(self.source)
                         if in_split(p.passage_id, self.split))
        if not passages:
            raise CorpusFileError(f"The corpus {self.source!r} has no passages in its "
                                  f"{self.split.replace('_', '-')} split. Use a larger corpus.")
        return passages


def text_corpus_task(source: str, split: str = "all") -> TextCorpusTask:
    """The corpus a run names: a built-in one by name (BUILTIN_CORPORA), else a file."""
    builtin = BUILTIN_CORPORA.get(source)
    return TextCorpusTask(source=str(builtin) if builtin else source, split=split)
