"""The launch form's seeds field: which seeds a text like "1, 2, 3", "0-4" or "x5" names."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

from webapp.runs.services import MAX_SEEDS

_COUNT = re.compile(r"^[x×*]\s*(\d+)$", re.IGNORECASE)
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
SEEDS_HELP = ('Seeds: "1, 2, 3", a range "0-4", or a count "x5" (five seeds from the '
              "experiment's own). Empty: one run with the experiment's seed.")


def seeds_parse(text: str, *, first: int) -> list[int]:
    """The seeds that `text` names, in order; [] for an empty text (one run, the config's own
    seed). A count "xN" (or "×N") starts at `first`, the experiment's seed, so its first run is
    the one a plain launch would start. ValidationError that says what to write otherwise.

    >>> seeds_parse("1, 2,3", first=0), seeds_parse("4-6", first=0), seeds_parse("x3", first=7)
    ([1, 2, 3], [4, 5, 6], [7, 8, 9])
    >>> seeds_parse("  ", first=0)
    []
    """
    text = text.strip()
    if not text:
        return []
    count = _COUNT.match(text)
    if count:
        n = int(count.group(1))
        if not 1 <= n <= MAX_SEEDS:
            raise ValidationError(f"Launch between 1 and {MAX_SEEDS} seeds at once; "
                                  f"{text!r} asks for {n}.")
        return list(range(first, first + n))
    seeds: list[int] = []
    for part in (part.strip() for part in text.split(",")):
        span = _RANGE.match(part)
        if span:
            low, high = int(span.group(1)), int(span.group(2))
            if high < low:
                raise ValidationError(f"The range {part!r} runs backwards; write it low-high.")
            if high - low + 1 + len(seeds) > MAX_SEEDS:
                raise ValidationError(f"At most {MAX_SEEDS} seeds at once; {part!r} alone "
                                      f"names {high - low + 1}.")
            seeds += range(low, high + 1)
        elif part.isdigit() and part.isascii():
            seeds.append(int(part))
        else:
            raise ValidationError(f"{part[:40]!r} is not a seed. {SEEDS_HELP}")
    return seeds
