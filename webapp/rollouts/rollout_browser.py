"""Reads for the rollout browser (the prompt history is prompt_history's, the token view
tokens').

The browser lists groups, one prompt's completions at one step, a page at a time:

- Filters select completions. A group is listed when at least one of its completions matches
  (step range and degeneracy are facts of the whole group), and it is shown whole: the matching
  completions first, the others after them, marked, so a match is always seen beside its
  siblings.
- The order is newest step first (or oldest first), or by reward, advantage or length, highest or
  lowest first. With a sort key a group is placed by its best matching completion: its highest
  value for "highest first", its lowest for "lowest first"; ties go to the newest step, then the
  lower group index; within a group the completions follow the same key. Completions that lack
  the value (no advantage or length recorded) are not used to place a group, so a group none of
  whose matching completions has it is left out of that order.

Speed on a million rollouts: a page never counts or sorts the run's rows. Each group is
represented by its best matching completion (a NOT EXISTS over the few rows of its group, on the
(run, step, group, sample) unique index), and the representatives are read in index order: every
order has an all-ascending index on (run, key, -step, group) in Rollout.Meta, so a page cursor is
one row comparison, (key, -step, group) > (v, -s, g), that the index seeks to directly. Pages are
keyset pages (`after` and `before` cursors), never OFFSET. Those indexes also hold the columns
the filters read, so a walk that passes over many rows (a step range far from the top of a reward
order, say) reads only the index. Text search uses Postgres trigram indexes: fast for words of
three characters or more; a search made only of one- and two-character tokens ("7 + 9") finds
no trigram to narrow it and reads the run's rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import BooleanField, Exists, ExpressionWrapper, F, Func, OuterRef, Q, Value
from django.db.models.expressions import BaseExpression
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual

from webapp.rollouts.importers import PROMPT_MESSAGES, UNSCORED

from webapp.runs.models import Negated, Rollout, Run

PAGE_GROUPS = 10

# Sort key -> the Rollout field it orders by.
SORT_FIELDS = {"step": "step", "reward": "reward", "advantage": "advantage",
               "length": "completion_tokens"}


class RowComparison(Func):
    """(a, b, c) < (x, y, z): SQL's row comparison, left to right. A B-tree index whose columns
    are a, b, c in that order answers it by seeking to (x, y, z), however many rows tie on a."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, left: list[Any], operator: str, right: list[Any]):
        if len(left) != len(right):
            raise ValueError("both sides of a row comparison need the same width")
        self.width, self.operator = len(left), operator
        super().__init__(*left, *[v if hasattr(v, "resolve_expression") else Value(v)
                                  for v in right])

    def as_sql(self, compiler, connection, **extra_context):
        parts, params = [], []
        for expression in self.get_source_expressions():
            sql, expression_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(expression_params)
        left, right = ", ".join(parts[:self.width]), ", ".join(parts[self.width:])
        return f"({left}) {self.operator} ({right})", params


@dataclass(frozen=True)
class RolloutFilters:
    """What the browser's filter form asks for; None or "" leaves a filter off."""

    step_min: int | None = None
    step_max: int | None = None
    reward_min: float | None = None
    reward_max: float | None = None
    degenerate: bool | None = None
    truncated: bool | None = None
    text: str = ""

    def completion_q(self, order: RolloutOrder) -> Q:
        """Conditions on one completion: reward range, truncation, text. Bounds on the sort key
        are written on the order's index expression, so the index can start at them."""
        q = Q()
        if self.reward_min is not None or self.reward_max is not None:
            q &= _bounds(order, "reward", self.reward_min, self.reward_max)
        if self.truncated is not None:
            q &= Q(truncated=self.truncated)
        if self.text:
            q &= Q(prompt__icontains=self.text) | Q(completion__icontains=self.text)
        return q

    def group_q(self, order: RolloutOrder) -> Q:
        """Conditions every completion of a group shares: its step and its degeneracy."""
        q = Q()
        if self.step_min is not None or self.step_max is not None:
            q &= _bounds(order, "step", self.step_min, self.step_max)
        if self.degenerate is not None:
            q &= Q(group_degenerate=self.degenerate)
        return q

    @property
    def active(self) -> bool:
        return any(value not in (None, "") for value in self.__dict__.values())


@dataclass(frozen=True)
class RolloutOrder:
    key: str = "step"  # a SORT_FIELDS key
    descending: bool = True

    @property
    def field(self) -> str:
        return SORT_FIELDS[self.key]

    def page_columns(self) -> list[BaseExpression]:
        """The groups' order, as all-ascending expressions matching an index in Rollout.Meta."""
        if self.key == "step":
            return [Negated("step") if self.descending else F("step"), F("group")]
        first = Negated(self.field) if self.descending else F(self.field)
        return [first, Negated("step"), F("group")]

    def group_columns(self, outer: bool = False) -> list[BaseExpression]:
        """The completions' order within a group; `outer` names the enclosing query's row."""
        ref = OuterRef if outer else F
        if self.key == "step":
            return [ref("sample_index")]
        first = Negated(ref(self.field)) if self.descending else ref(self.field)
        return [first, ref("sample_index")]

    def sort_value(self, rollout: Rollout) -> tuple:
        """Python's version of group_columns, for a group's rows read back."""
        if self.key == "step":
            return (rollout.sample_index,)
        value = getattr(rollout, self.field)
        if value is None:
            return (1, 0.0, rollout.sample_index)
        return (0, -value if self.descending else value, rollout.sample_index)


def _bounds(order: RolloutOrder, name: str, low: float | None, high: float | None) -> Q:
    """low <= name <= high; on -name when the order's index is on -name, so Postgres uses the
    bounds as index conditions instead of filtering its way to them."""
    negated = order.field == SORT_FIELDS.get(name, name) and order.descending
    column = Negated(name) if negated else F(name)
    if negated:
        low, high = (-high if high is not None else None), (-low if low is not None else None)
    q = Q()
    if low is not None:
        q &= Q(GreaterThanOrEqual(column, low))
    if high is not None:
        q &= Q(LessThanOrEqual(column, high))
    return q


class BadCursor(ValueError):
    """A page link whose cursor cannot be read."""


def encode_cursor(values: tuple) -> str:
    """
    >>> encode_cursor((-1.5, -12, 3))
    '-1.5_-12_3'
    """
    return "_".join(repr(v) if isinstance(v, float) else str(v) for v in values)


def decode_cursor(text: str, order: RolloutOrder) -> tuple:
    """The sort values of a cursor, typed as the order's columns (a float key, then ints).

    >>> decode_cursor("-1.5_-12_3", RolloutOrder("reward"))
    (-1.5, -12, 3)
    """
    parts = text.split("_")
    if len(parts) != len(order.page_columns()):
        raise BadCursor(text)
    float_first = order.field in ("reward", "advantage")
    try:
        values = tuple(float(p) if i == 0 and float_first else int(p)
                       for i, p in enumerate(parts))
    except ValueError as exc:
        raise BadCursor(text) from exc
    if not all(math.isfinite(v) if isinstance(v, float) else abs(v) < 2**63 for v in values):
        raise BadCursor(text)
    return values


def reward_names(rollouts: list[Rollout]) -> list[str]:
    """Every reward function any of the rollouts reported, in first-seen order."""
    names: dict[str, None] = {}
    for rollout in rollouts:
        names.update(dict.fromkeys(rollout.rewards or {}))
    return list(names)


@dataclass
class RolloutGroup:
    """One prompt's logged completions at one step, for the browser."""

    step: int
    group: int
    completions: list[Rollout]
    group_size: int | None

    @property
    def first(self) -> Rollout:
        return min(self.completions, key=lambda r: r.sample_index)

    @property
    def prompt(self) -> str:
        return self.first.prompt

    @property
    def prompt_messages(self) -> list[dict[str, str]] | None:
        return self.first.prompt_messages

    @property
    def prompt_id(self) -> str:
        return self.first.prompt_id

    @property
    def degenerate(self) -> bool | None:
        return self.first.group_degenerate

    @property
    def mean_reward(self) -> float | None:
        return mean_reward(self.completions)

    @property
    def partial(self) -> bool:
        """Only some of its completions were logged (the trainer logs the first N a step)."""
        return bool(self.group_size) and len(self.completions) < self.group_size

    @property
    def reward_names(self) -> list[str]:
        return reward_names(self.completions)


@dataclass
class RolloutPage:
    groups: list[RolloutGroup]
    next_cursor: str | None = None
    prev_cursor: str | None = None


def _representatives(run: Run, filters: RolloutFilters, order: RolloutOrder):
    """Each listed group's best matching completion, one row per group."""
    matching = filters.completion_q(order)
    if order.key != "step":
        matching &= Q(**{f"{order.field}__isnull": False})
    better_sibling = Rollout.objects.filter(
        matching, run=OuterRef("run"), step=OuterRef("step"), group=OuterRef("group")).filter(
        RowComparison(order.group_columns(), "<", order.group_columns(outer=True)))
    return Rollout.objects.filter(matching, filters.group_q(order), run=run).filter(
        ~Exists(better_sibling))


def rollout_page(run: Run, filters: RolloutFilters, order: RolloutOrder, *, after: str = "",
                 before: str = "", size: int = PAGE_GROUPS) -> RolloutPage:
    """The page of groups after the `after` cursor (or before `before`; the first page when
    neither is given). Raises BadCursor for a cursor that cannot be read."""
    backwards = bool(before) and not after
    found = list(page_query(run, filters, order, after=after, before=before, size=size))
    more = len(found) > size
    found = found[:size]
    if backwards:
        found.reverse()
    page = RolloutPage(groups=_groups(run, [(s, g) for s, g, *_ in found], filters, order))
    if found:
        first, last = encode_cursor(tuple(found[0][2:])), encode_cursor(tuple(found[-1][2:]))
        page.next_cursor = last if (more or backwards) else None
        page.prev_cursor = first if (more if backwards else bool(after)) else None
    return page


def page_query(run: Run, filters: RolloutFilters, order: RolloutOrder, *, after: str = "",
               before: str = "", size: int = PAGE_GROUPS):
    """(step, group, *sort values) of up to size + 1 groups' representatives, in page order
    (reversed for a `before` page)."""
    columns = order.page_columns()
    names = [f"sort{i}" for i in range(len(columns))]
    rows = _representatives(run, filters, order).annotate(**dict(zip(names, columns)))
    backwards = bool(before) and not after
    if after:
        rows = rows.filter(RowComparison(columns, ">", list(decode_cursor(after, order))))
    elif before:
        rows = rows.filter(RowComparison(columns, "<", list(decode_cursor(before, order))))
    ordering = [F(name).desc() if backwards else F(name).asc() for name in names]
    return rows.order_by(*ordering).values_list("step", "group", *names)[:size + 1]


def for_display(rollouts):
    """Rollouts as the completions table shows them: their labels, whether a token view was
    recorded, and not the token arrays themselves; of their `extra`, only what the pages show
    (an imported conversation's messages, why an imported rollout has no score)."""
    return (rollouts.defer("token_data", "extra").prefetch_related("annotations")
            .annotate(has_tokens=ExpressionWrapper(Q(token_data__isnull=False),
                                                   output_field=BooleanField()),
                      prompt_messages=F(f"extra__{PROMPT_MESSAGES}"),
                      unscored=F(f"extra__{UNSCORED}")))


def mean_reward(rollouts: list[Rollout]) -> float | None:
    """The mean reward of those that have a score (an imported rollout may have none)."""
    rewards = [r.reward for r in rollouts if not r.unscored]
    return sum(rewards) / len(rewards) if rewards else None


def _groups(run: Run, keys: list[tuple[int, int]], filters: RolloutFilters,
            order: RolloutOrder) -> list[RolloutGroup]:
    """The listed groups with all their logged completions, each marked `matches`."""
    if not keys:
        return []
    matching = filters.completion_q(order)
    rows = for_display(
        Rollout.objects.filter(reduce(or_, (Q(step=s, group=g) for s, g in keys)), run=run)
    ).annotate(matches=ExpressionWrapper(matching, output_field=BooleanField())
               if matching else Value(True))
    by_key: dict[tuple[int, int], list[Rollout]] = {key: [] for key in keys}
    for rollout in rows:
        by_key[(rollout.step, rollout.group)].append(rollout)
    group_size = run.config.get("group_size")
    return [RolloutGroup(step=s, group=g, group_size=group_size,
                         completions=sorted(rollouts, key=lambda r: (not r.matches,
                                                                     order.sort_value(r))))
            for (s, g), rollouts in by_key.items()]


# Prompt history -------------------------------------------------------------------------------
