"""Reading the rollouts that other trainers leave on disk, so that a run trained with TRL or veRL
can be browsed here like one of rlab's. No Django here: files in, one list of rollout items per
step out, in the shape `webapp.runs.services.rollouts_ingest` takes.

The formats, as the trainers write them (keep in step with their source):

- TRL: `GRPOTrainer.log` in trl/trainer/grpo_trainer.py, with `log_completions=True`, writes
  `<output_dir>/completions/completions_<global_step:05d>.parquet` with pandas: one row per
  completion of the last generation batch, columns `step`, `prompt`, `completion` (decoded text),
  one float column per reward function (named as the function; NaN where it gave no reward), the
  columns reward functions add with `log_extra`, and `advantage`. There is no total reward:
  TRL trains on the weighted sum of the per-function rewards, NaN skipped; the weights are not in
  the file, so the total here is the plain sum, as with TRL's default weights of 1.
- veRL: `RayPPOTrainer._dump_generations` in verl/trainer/ppo/ray_trainer.py, with
  `trainer.rollout_data_dir` set, writes `<dir>/<global_steps>.jsonl`: one object per completion,
  `input`, `output` (decoded text), `score` (the summed token-level score), `step`, `gts` (the
  ground truth; files before August 2025 lack it) and the reward function's extra infos as more
  keys. No advantage is written.

Neither format says which completions were sampled from one prompt, so the completions of a step
with the same prompt text form a group, in the order the prompts first appear. A step's files
must therefore be imported together, and again in the same order for a re-import to store
nothing twice. Keys and columns the format does not define are kept in each rollout's `extra`.

Every problem a person can fix is a `RolloutFileError` naming the file, the row or line and the
column; a file with any problem gives no rollouts at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from webapp.datasets.parsing import ProblemList

TRL, VERL = "trl", "verl"
MAX_STEP = 2**63 - 1  # a step is a BigIntegerField
FORMATS = (TRL, VERL)
# A Parquet file is compressed; refuse one whose rows expand past this many times its size.
PARQUET_EXPANSION_LIMIT = 20
PARQUET_MIN_BUDGET = 64 * 2**20

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

TRL_COLUMNS = ("step", "prompt", "completion", "advantage")
TRL_SHAPE = ("A TRL completions file (GRPOTrainer with log_completions=True) has the columns "
             "step, prompt, completion, one per reward function, and advantage.")
VERL_KEYS = ("input", "output", "score", "step")
VERL_SHAPE = ("A veRL rollout dump (trainer.rollout_data_dir) has one JSON object per line with "
              "input, output, score and step.")


class RolloutFileError(ValueError):
    """Files that cannot become rollouts; `messages` says why, one problem each."""

    def __init__(self, messages: list[str], *, more: int = 0):
        self.messages = list(messages)
        if more:
            self.messages.append(f"… and {more} more {'problem' if more == 1 else 'problems'}.")
        super().__init__(" ".join(self.messages))


@dataclass(frozen=True, slots=True)
class Completion:
    """One completion as a file records it, before it is placed in a group."""

    step: int
    prompt: str
    completion: str
    reward: float
    rewards: dict[str, float] = field(default_factory=dict)
    advantage: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def detect_format(data: bytes) -> str:
    """TRL for a Parquet file (by its magic bytes), veRL for anything else."""
    return TRL if data.startswith(b"PAR1") else VERL


def read_files(files: Iterable[tuple[str, bytes]], *, format: str,
               reward_columns: Collection[str] | None = None) -> dict[int, list[dict[str, Any]]]:
    """The rollout items of each step of (file name, bytes) `files`, steps in order. Every file is
    read before any error is raised, so one error lists the problems of them all."""
    if format not in FORMATS:
        raise RolloutFileError([f"Unknown format {format!r}: choose one of {', '.join(FORMATS)}."])
    if reward_columns and format != TRL:
        raise RolloutFileError(["Reward columns are named for TRL files only: a veRL dump has "
                                "one score per line."])
    errors = ProblemList(RolloutFileError)
    completions: list[Completion] = []
    for name, data in files:
        if format == TRL:
            completions.extend(_read_trl(data, _Where(name), errors, reward_columns))
        else:
            completions.extend(_read_verl(data, _Where(name), errors))
    errors.raise_any()
    return group_by_step(completions)


def group_by_step(completions: Iterable[Completion]) -> dict[int, list[dict[str, Any]]]:
    """Rollout items per step: a step's completions of one prompt form a group, numbered in the
    order the prompts first appear, with their samples in file order. A group is degenerate when
    it has two or more completions and all their rewards are equal (no GRPO signal)."""
    groups: dict[int, dict[str, list[Completion]]] = {}
    for completion in completions:
        groups.setdefault(completion.step, {}).setdefault(completion.prompt, []).append(
            completion)
    steps: dict[int, list[dict[str, Any]]] = {}
    for step in sorted(groups):
        items = steps[step] = []
        for group, members in enumerate(groups[step].values()):
            rewards = [member.reward for member in members]
            degenerate = max(rewards) == min(rewards) if len(members) > 1 else None
            items.extend(_item(completion, group, sample, degenerate)
                         for sample, completion in enumerate(members))
    return steps


def _item(completion: Completion, group: int, sample: int,
          degenerate: bool | None) -> dict[str, Any]:
    return {
        "prompt": completion.prompt, "completion": completion.completion,
        "reward": completion.reward, "rewards": completion.rewards,
        "advantage": completion.advantage, "group": group, "sample_index": sample,
        "prompt_id": prompt_id(completion.prompt), "extra": completion.extra,
        "group_degenerate": degenerate,
    }


def prompt_id(prompt: str) -> str:
    """A prompt's id from its text, the same in every step and file, so that the prompt history
    follows an imported prompt through training.

    >>> prompt_id("What is 2 + 3?")
    '1ea26256ebae'
    """
    return hashlib.sha256(prompt.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _Where:
    """Says where a problem is: the file (when it has a name), the line or row, the column."""

    filename: str

    def __call__(self, unit: str = "", column: str = "") -> str:
        parts = [self.filename] if self.filename else []
        parts += [unit] if unit else []
        parts += [f"column {column!r}"] if column else []
        text = ", ".join(parts)
        if not text:
            return "The file"
        return text if self.filename else text[:1].upper() + text[1:]


# TRL


def _read_trl(data: bytes, where: _Where, errors: ProblemList,
              reward_columns: Collection[str] | None) -> list[Completion]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (len(data) >= 12 and data.startswith(b"PAR1") and data.endswith(b"PAR1")):
        errors.add(f"{where()} is not a Parquet file: it lacks the PAR1 markers at its start and "
                   f"end. {TRL_SHAPE}")
        return []
    # pyarrow raises many kinds of error on damaged input; any of them means "unreadable".
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        schema = parquet.schema_arrow
    except Exception as exc:
        errors.add(f"{where()} cannot be read as Parquet ({_first_line(exc)}).")
        return []
    names = [name for name in schema.names if not name.startswith("__index_level_")]
    missing = [name for name in ("step", "prompt", "completion") if name not in names]
    if missing:
        errors.add(f"{where()} has no {_listed(missing)} column. {TRL_SHAPE}")
        return []
    if reward_columns:
        rewards = [name for name in reward_columns if name in names]
        absent = [name for name in reward_columns if name not in names]
        if absent:
            errors.add(f"{where()} has no reward column {_listed(absent)}; its columns are "
                       f"{_listed(names)}.")
            return []
    else:
        # A reward function's column holds floats; log_extra columns are usually text or ints.
        rewards = [name for name in names if name not in TRL_COLUMNS
                   and pa.types.is_floating(schema.field(name).type)]
        if not rewards:
            errors.add(f"{where()} has no reward column (a column of floats besides advantage). "
                       f"{TRL_SHAPE}")
            return []
    extras = [name for name in names if name not in TRL_COLUMNS and name not in rewards]
    budget = max(PARQUET_MIN_BUDGET, PARQUET_EXPANSION_LIMIT * len(data))
    found: list[Completion] = []
    expanded = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024, columns=names):
            expanded += batch.nbytes
            if expanded > budget:
                errors.add(f"{where()} expands to more than {budget // 2**20} MiB of data: "
                           f"import its rows in smaller files.")
                return []
            columns = {name: batch.column(name).to_pylist() for name in names}
            for offset in range(batch.num_rows):
                row = {name: values[offset] for name, values in columns.items()}
                found.append(_trl_completion(row, where(f"row {len(found) + 1}"), errors,
                                             rewards, extras))
    except Exception as exc:
        errors.add(f"{where()} cannot be read as Parquet ({_first_line(exc)}).")
        return []
    return found


def _trl_completion(row: dict[str, Any], at: str, errors: ProblemList, rewards: list[str],
                    extras: list[str]) -> Completion:
    def cell_at(column: str) -> str:
        return f"{at}, column {column!r}"

    step = _step(row["step"], cell_at("step"), errors)
    prompt = _text(row["prompt"], cell_at("prompt"), errors)
    completion = _text(row["completion"], cell_at("completion"), errors)
    scores: dict[str, float] = {}
    for name in rewards:
        value = _number(row[name], cell_at(name), errors, missing_ok=True)
        if value is not None and math.isfinite(value):
            scores[name] = value
    advantage = _number(row.get("advantage"), cell_at("advantage"), errors, missing_ok=True)
    if advantage is not None and not math.isfinite(advantage):
        advantage = None
    return Completion(step=step, prompt=prompt, completion=completion,
                      reward=sum(scores.values()), rewards=scores, advantage=advantage,
                      extra={name: _json_value(row[name]) for name in extras})


# veRL


def _read_verl(data: bytes, where: _Where, errors: ProblemList) -> list[Completion]:
    stem = PurePosixPath(where.filename).stem
    step_from_name = int(stem) if stem.isdigit() else None
    found: list[Completion] = []
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if not raw.strip():
            continue
        at = where(f"line {number}")
        try:
            entry = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            errors.add(f"{at} is not UTF-8 text.")
            continue
        except json.JSONDecodeError as exc:
            errors.add(f"{at} is not JSON ({exc.msg} at character {exc.pos + 1}). {VERL_SHAPE}")
            continue
        if not isinstance(entry, dict):
            errors.add(f"{at} is not a JSON object. {VERL_SHAPE}")
            continue
        missing = [key for key in ("input", "output", "score") if key not in entry]
        if "step" not in entry and step_from_name is None:
            missing.append("step")
        if missing:
            errors.add(f"{at} has no {_listed(missing)}. {VERL_SHAPE}")
            continue

        def key_at(key: str) -> str:
            return f"{at}, key {key!r}"

        step = _step(entry.get("step", step_from_name), key_at("step"), errors)
        reward = _number(entry["score"], key_at("score"), errors)
        if reward is not None and not math.isfinite(reward):
            errors.add(f"{key_at('score')}: {reward} is not a finite number.")
        found.append(Completion(
            step=step, prompt=_text(entry["input"], key_at("input"), errors),
            completion=_text(entry["output"], key_at("output"), errors), reward=reward or 0.0,
            extra={key: _json_value(value) for key, value in entry.items()
                   if key not in VERL_KEYS}))
    if not found and not errors.messages:
        errors.add(f"{where()} holds no rollouts: it is empty. {VERL_SHAPE}")
    return found


# Cells


def _step(value: Any, at: str, errors: ProblemList) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STEP:
        errors.add(f"{at}: the step is {_shown(value)}, not a whole number 0 or more.")
        return 0
    return value


def _number(value: Any, at: str, errors: ProblemList, *, missing_ok: bool = False) -> float | None:
    if value is None and missing_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.add(f"{at}: {_shown(value)} is not a number.")
        return None
    try:
        return float(value)
    except OverflowError:
        errors.add(f"{at}: {_shown(value)} is too large a number.")
        return None


def _text(value: Any, at: str, errors: ProblemList) -> str:
    if value is None:
        errors.add(f"{at}: the text is missing.")
        return ""
    if not isinstance(value, str):
        errors.add(f"{at}: {_shown(value)} is not text.")
        return ""
    return _storable(value)


def _storable(text: str) -> str:
    """`text` as Postgres can store it: a NUL character, which a model may well generate, becomes
    U+FFFD, and so does half of a surrogate pair (JSON allows one; UTF-8 does not)."""
    return UNSTORABLE.sub("\ufffd", text)


def _json_value(value: Any) -> Any:
    """A cell as JSON that Postgres stores: NaN and infinities become null, bytes a note of
    their size, dates ISO text, anything else unknown its text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_storable(str(key)): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return _storable(str(value))


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "…"


def _listed(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
