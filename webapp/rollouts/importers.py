"""Reading the rollouts that other trainers leave on disk, so that a run trained with TRL or veRL
can be browsed here like one of rlab's. No Django here: files in, batches of rollout items per
step out, in the shape `webapp.runs.services.rollouts_import` takes.

The formats, as the trainers write them (keep in step with their source):

- TRL: `GRPOTrainer.log` in trl/trainer/grpo_trainer.py, with `log_completions=True`, writes
  `<output_dir>/completions/completions_<global_step:05d>.parquet` with pandas: one row per
  completion of the last generation batch, columns `step`, `prompt`, `completion`, one float
  column per reward function (named as the function; NaN where it gave no reward), the
  columns reward functions add with `log_extra`, and `advantage`. There is no total reward:
  TRL trains on the weighted sum of the per-function rewards, NaN skipped; the weights are not in
  the file, so the total here is the plain sum, as with TRL's default weights of 1.
  With a conversational dataset, `prompt` and `completion` are lists of `{role, content}`
  messages (`strip_images_from_messages` leaves an image block as `{"type": "image"}`): the
  prompt is kept as its messages (`extra["prompt_messages"]`, shown as a chat) and as text,
  one `role: content` paragraph per message; the completion as its assistant messages' text.
- veRL: `RayPPOTrainer._dump_generations` in verl/trainer/ppo/ray_trainer.py, with
  `trainer.rollout_data_dir` set, writes `<dir>/<global_steps>.jsonl`: one object per completion,
  `input`, `output` (decoded text), `score` (the summed token-level score), `step`, `gts` (the
  ground truth; files before August 2025 lack it) and the reward function's extra infos as more
  keys. No advantage is written.

Neither format says which completions were sampled from one prompt, so the completions of a step
with the same prompt text form a group, in the order the prompts first appear. A step's files
must therefore be imported together, and again in the same order for a re-import to store
nothing twice. Keys and columns the format does not define are kept in each rollout's `extra`.

Files are read as streams, never whole (webapp.datasets.streaming), each within `LIMITS`, and
twice: `scan_files` reads every row of every file, checking it and counting each group's
completions, without keeping any; `RolloutScan.batches` then reads them again and yields their
rollout items a batch at a time, for the caller to store in one transaction. Memory holds one
batch, and a few numbers per group.

Every problem a person can fix is a `RolloutFileError` naming the file, the row or line and the
column; a file with any problem gives no rollouts at all. Two things are not problems but notes:
a row whose score is NaN or missing (TRL: every reward function's) is stored "unscored"
(`extra["unscored"]` says why, its reward 0, as TRL's NaN-skipping sum gives it), and a column
of images or bytes is left out (`RolloutScan.left_out` says which and why).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from webapp.common.inputs import BIGINT_MAX, storable_text
from webapp.common.problems import FileProblems, ProblemList
from webapp.datasets import streaming
from webapp.datasets.streaming import LimitExceeded, Limits, MiB, Unreadable

TRL, VERL = "trl", "verl"
FORMATS = (TRL, VERL)
# Each file of an import: its rows, what they decode to, and one row (a long completion, with its
# prompt and extras, fits many times over).
LIMITS = Limits(rows=200_000, decoded_bytes=256 * MiB, row_bytes=8 * MiB)
MAX_COLUMNS = 1000
LIMIT_ADVICE = "Import its rows in smaller files."
BATCH_ITEMS = 1000


TRL_COLUMNS = ("step", "prompt", "completion", "advantage")
TRL_SHAPE = ("A TRL completions file (GRPOTrainer with log_completions=True) has the columns "
             "step, prompt, completion, one per reward function, and advantage.")
VERL_KEYS = ("input", "output", "score", "step")
VERL_SHAPE = ("A veRL rollout dump (trainer.rollout_data_dir) has one JSON object per line with "
              "input, output, score and step.")
LOOKS_LIKE_TRL = "This looks like a TRL Parquet file: use format=trl."
LOOKS_LIKE_VERL = "This looks like a veRL JSON-lines dump: use format=verl."
# Where a conversational prompt's messages are kept, and an unscored row's reason (both in
# `extra`, which the rollout pages read).
PROMPT_MESSAGES = "prompt_messages"
COMPLETION_MESSAGES = "completion_messages"
UNSCORED = "unscored"


class RolloutFileError(FileProblems):
    """Files that cannot become rollouts; `messages` says why, one problem each."""


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

    @property
    def scored(self) -> bool:
        return UNSCORED not in self.extra


def detect_format(path: Path) -> str:
    """TRL for a Parquet file (by its magic bytes), veRL for anything else."""
    with path.open("rb") as file:
        return TRL if file.read(4) == b"PAR1" else VERL


@dataclass(slots=True)
class _Group:
    """The completions of one prompt in one step, as far as grouping needs them."""

    index: int  # the group's number in its step: prompts in the order they first appear
    size: int
    reward: float | None  # the first scored completion's
    scored: int = 0  # completions with a score
    mixed: bool = False  # whether some other scored completion's reward differs from the first's
    placed: int = 0  # completions given a sample index so far (by RolloutScan.batches)

    def add(self, completion: Completion) -> None:
        if not completion.scored:
            return
        self.scored += 1
        if self.reward is None:
            self.reward = completion.reward
        self.mixed = self.mixed or completion.reward != self.reward


@dataclass
class RolloutScan:
    """Files of rollouts read through once and found without problems: how many rollouts, of
    which steps, in which groups; `batches` reads them again to store them."""

    files: Sequence[tuple[str, Path]]
    format: str
    reward_columns: Collection[str] | None
    limits: Limits
    rows: int
    groups: dict[int, dict[bytes, _Group]]
    unscored: int = 0
    left_out: dict[str, str] = field(default_factory=dict)  # column: why

    @property
    def steps(self) -> list[int]:
        return sorted(self.groups)

    def batches(self, size: int = BATCH_ITEMS) -> Iterator[dict[int, list[dict[str, Any]]]]:
        """The rollout items of each step, at most `size` at a time, in the shape
        `webapp.runs.services.rollouts_import` takes: a step's completions of one prompt form a
        group, numbered in the order the prompts first appear, with their samples in file order.
        A group is degenerate when it has two or more scored completions and all their rewards
        are equal (no GRPO signal). RolloutFileError, after the batches before it, if the files no
        longer read as they did: store the batches in one transaction."""
        for step_groups in self.groups.values():
            for group in step_groups.values():
                group.placed = 0
        errors = ProblemList(RolloutFileError)
        batch: dict[int, list[dict[str, Any]]] = {}
        count = 0
        for completion in _completions(self.files, self.format, self.reward_columns,
                                       self.limits, errors, {}):
            group = self.groups.get(completion.step, {}).get(_group_key(completion.prompt))
            if group is None or group.placed == group.size:
                errors.add("The files changed while they were imported: import them again.")
                break
            degenerate = not group.mixed if group.scored > 1 else None
            batch.setdefault(completion.step, []).append(
                _item(completion, group.index, group.placed, degenerate))
            group.placed += 1
            count += 1
            if count == size:
                yield batch
                batch, count = {}, 0
        errors.raise_any()
        if batch:
            yield batch


def scan_files(files: Sequence[tuple[str, Path]], *, format: str,
               reward_columns: Collection[str] | None = None,
               limits: Limits = LIMITS) -> RolloutScan:
    """Read (file name, path) `files` through, each within `limits`: RolloutFileError if any
    row of any of them has a problem, listing the problems of them all."""
    if format not in FORMATS:
        raise RolloutFileError([f"Unknown format {format!r}: choose one of {', '.join(FORMATS)}."])
    if reward_columns and format != TRL:
        raise RolloutFileError(["Reward columns are named for TRL files only: a veRL dump has "
                                "one score per line."])
    errors = ProblemList(RolloutFileError)
    groups: dict[int, dict[bytes, _Group]] = {}
    rows = unscored = 0
    left_out: dict[str, str] = {}
    for completion in _completions(files, format, reward_columns, limits, errors, left_out):
        rows += 1
        unscored += not completion.scored
        step_groups = groups.setdefault(completion.step, {})
        key = _group_key(completion.prompt)
        if (group := step_groups.get(key)) is None:
            group = step_groups[key] = _Group(index=len(step_groups), size=0, reward=None)
        group.size += 1
        group.add(completion)
    errors.raise_any()
    return RolloutScan(files=files, format=format, reward_columns=reward_columns, limits=limits,
                       rows=rows, groups=groups, unscored=unscored, left_out=left_out)


def _group_key(prompt: str) -> bytes:
    """A prompt's key among its step's groups: a digest, so that a group costs the same
    however long its prompt."""
    return hashlib.blake2b(prompt.encode(), digest_size=16).digest()


def _completions(files: Sequence[tuple[str, Path]], format: str,
                 reward_columns: Collection[str] | None, limits: Limits,
                 errors: ProblemList, left_out: dict[str, str]) -> Iterator[Completion]:
    """The completions of each file in turn, read as a stream; problems go to `errors`, columns
    left out to `left_out`, and a file past a limit is read no further."""
    for name, path in files:
        where = _Where(name)
        with path.open("rb") as file:
            read = _read_trl(file, where, errors, reward_columns, limits, left_out) \
                if format == TRL else _read_verl(file, where, errors, limits)
            try:
                yield from read
            except LimitExceeded as exc:
                errors.add(f"{exc} {LIMIT_ADVICE}")


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


def _read_trl(file: BinaryIO, where: _Where, errors: ProblemList,
              reward_columns: Collection[str] | None, limits: Limits,
              left_out: dict[str, str]) -> Iterator[Completion]:
    import pyarrow as pa

    size = streaming.file_size(file)
    if not streaming.is_parquet(file, size):
        hint = LOOKS_LIKE_VERL if _starts_like_json(file) else TRL_SHAPE
        errors.add(f"{where()} is not a Parquet file: it lacks the PAR1 markers at its start and "
                   f"end. {hint}")
        return
    try:
        parquet = streaming.ParquetRows(file, size=size, limits=limits, where=where,
                                        max_columns=MAX_COLUMNS)
    except Unreadable as exc:
        errors.add(f"{where()} cannot be read as Parquet ({exc}).")
        return
    schema = parquet.schema
    names = [name for name in schema.names if not name.startswith("__index_level_")]
    missing = [name for name in ("step", "prompt", "completion") if name not in names]
    if missing:
        errors.add(f"{where()} has no {_listed(missing)} column. {TRL_SHAPE}")
        return
    if reward_columns:
        rewards = [name for name in reward_columns if name in names]
        absent = [name for name in reward_columns if name not in names]
        if absent:
            errors.add(f"{where()} has no reward column {_listed(absent)}; its columns are "
                       f"{_listed(names)}.")
            return
    else:
        # A reward function's column holds floats; log_extra columns are usually text or ints.
        rewards = [name for name in names if name not in TRL_COLUMNS
                   and pa.types.is_floating(schema.field(name).type)]
        if not rewards:
            errors.add(f"{where()} has no reward column (a column of floats besides advantage). "
                       f"{TRL_SHAPE}")
            return
    extras = []
    for name in names:
        if name in TRL_COLUMNS or name in rewards:
            continue
        if _holds_bytes(schema.field(name).type):
            left_out[name] = ("it holds images or bytes, which rollouts do not store; the "
                              "rows are imported without it.")
        else:
            extras.append(name)
    found = 0
    try:
        for number, row in parquet.read(names):
            found += 1
            yield _trl_completion(row, where(f"row {number}"), errors, rewards, extras)
    except Unreadable as exc:
        errors.add(f"{where()} cannot be read as Parquet ({exc}).")
        return
    if not found:
        errors.add(f"{where()} holds no rollouts: it has no rows. {TRL_SHAPE}")

def _trl_completion(row: dict[str, Any], at: str, errors: ProblemList, rewards: list[str],
                    extras: list[str]) -> Completion:
    def cell_at(column: str) -> str:
        return f"{at}, column {column!r}"

    step = _step(row["step"], cell_at("step"), errors)
    extra = {name: _json_value(row[name]) for name in extras}
    if isinstance(row["prompt"], list):
        messages = _messages(row["prompt"], cell_at("prompt"), errors)
        prompt = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
        extra[PROMPT_MESSAGES] = messages
    else:
        prompt = _text(row["prompt"], cell_at("prompt"), errors)
    if isinstance(row["completion"], list):
        messages = _messages(row["completion"], cell_at("completion"), errors)
        completion = "\n\n".join(m["content"] for m in messages if m["role"] == "assistant")
        if any(m["role"] != "assistant" for m in messages):  # a tool's answers between turns
            extra[COMPLETION_MESSAGES] = messages
    else:
        completion = _text(row["completion"], cell_at("completion"), errors)
    scores: dict[str, float] = {}
    for name in rewards:
        value = _number(row[name], cell_at(name), errors, missing_ok=True)
        if value is not None and math.isfinite(value):
            scores[name] = value
    if rewards and not scores:
        extra[UNSCORED] = (f"no reward function scored it: {_listed(rewards)} "
                           f"{'is' if len(rewards) == 1 else 'are all'} NaN or missing")
    advantage = _number(row.get("advantage"), cell_at("advantage"), errors, missing_ok=True)
    if advantage is not None and not math.isfinite(advantage):
        advantage = None
    return Completion(step=step, prompt=prompt, completion=completion,
                      reward=sum(scores.values()), rewards=scores, advantage=advantage,
                      extra=extra)


def _messages(value: list, at: str, errors: ProblemList) -> list[dict[str, str]]:
    """A conversation as TRL logs it, as `{role, content}` messages with text content: a list of
    content blocks becomes its text blocks' text, an image block "[image]"."""
    messages = []
    for number, message in enumerate(value, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            errors.add(f"{at}, message {number}: {_shown(message)} is not a message "
                       "({role, content}).")
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(_block_text(block) for block in content)
        if content is None:
            content = ""
        if not isinstance(content, str):
            errors.add(f"{at}, message {number}: its content {_shown(content)} is not text.")
            continue
        messages.append({"role": storable_text(message["role"]),
                         "content": storable_text(content)})
    return messages


def _block_text(block: Any) -> str:
    """A content block's text: a text block's, "[image]" where an image was."""
    if not isinstance(block, dict):
        return str(block)
    return "[image]" if block.get("type") == "image" else block.get("text") or ""


def _holds_bytes(type_) -> bool:
    """Whether an Arrow type is or holds binary data: an image column (Hugging Face's Image
    feature is a struct of bytes and path), or raw bytes."""
    import pyarrow as pa

    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_) \
            or pa.types.is_fixed_size_binary(type_):
        return True
    if pa.types.is_struct(type_):
        return any(_holds_bytes(type_.field(i).type) for i in range(type_.num_fields))
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) \
            or pa.types.is_fixed_size_list(type_):
        return _holds_bytes(type_.value_type)
    return False


def _starts_like_json(file: BinaryIO) -> bool:
    file.seek(0)
    start = file.read(64).removeprefix(b"\xef\xbb\xbf").lstrip()
    file.seek(0)
    return start.startswith(b"{")


# veRL


def _read_verl(file: BinaryIO, where: _Where, errors: ProblemList,
               limits: Limits) -> Iterator[Completion]:
    if streaming.is_parquet(file, streaming.file_size(file)):
        errors.add(f"{where()} is a Parquet file, not a veRL dump. {LOOKS_LIKE_TRL}")
        return
    stem = PurePosixPath(where.filename).stem
    step_from_name = int(stem) if stem.isdigit() else None
    counter = streaming.Counter(limits, where)
    found = 0
    for number, raw in _lines(file, where, counter):
        if not raw.strip():
            continue
        counter.add(rows=1)
        at = where(f"line {number}")
        try:
            entry = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            errors.add(f"{at} is not UTF-8 text.")
            continue
        except json.JSONDecodeError as exc:
            errors.add(f"{at} is not JSON ({exc.msg} at character {exc.pos + 1}). {VERL_SHAPE}")
            continue
        except (ValueError, RecursionError) as exc:  # an integer with over 4300 digits; nesting
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            errors.add(f"{at} is not JSON ({reason}). {VERL_SHAPE}")
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
        reward = _number(entry["score"], key_at("score"), errors, missing_ok=True)
        try:
            extra = {key: _json_value(value) for key, value in entry.items()
                     if key not in VERL_KEYS}
        except RecursionError:
            errors.add(f"{at} is not JSON (nested too deeply). {VERL_SHAPE}")
            continue
        if reward is None or not math.isfinite(reward):
            extra[UNSCORED] = f"its score is {_shown(entry['score'])}"
            reward = None
        found += 1
        yield Completion(
            step=step, prompt=_text(entry["input"], key_at("input"), errors),
            completion=_text(entry["output"], key_at("output"), errors), reward=reward or 0.0,
            extra=extra)
    if not found and not errors.messages:
        errors.add(f"{where()} holds no rollouts: it is empty. {VERL_SHAPE}")


def _lines(file: BinaryIO, where: _Where,
           counter: streaming.Counter) -> Iterator[tuple[int, bytes]]:
    """(number, line) for each line of `file`, the byte order mark taken off the first, read a
    block at a time; LimitExceeded at a line longer than a row may be."""
    number = 0
    for block in streaming.blocks(file, max_line_bytes=counter.limits.row_bytes, where=where):
        counter.add(decoded_bytes=len(block))
        if not number:
            block = block.removeprefix(b"\xef\xbb\xbf")
        lines = block.split(b"\n")
        if not lines[-1]:
            lines.pop()  # what follows the block's last "\n"
        for number, line in enumerate(lines, start=number + 1):
            if len(line) > counter.limits.row_bytes:
                raise streaming.line_too_long(where, number, counter.limits.row_bytes)
            yield number, line

# Cells


def _step(value: Any, at: str, errors: ProblemList) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BIGINT_MAX:
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
    return storable_text(value)


def _json_value(value: Any) -> Any:
    """A cell as JSON that Postgres stores: NaN and infinities become null, bytes a note of
    their size, dates ISO text, anything else unknown its text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return storable_text(str(value))


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "…"


def _listed(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)

