"""The API's request and response bodies. Requests are checked here, field by field, before any
service sees them: a bad body is a 422 that names each bad field, never a half-stored batch.

A metric batch holds up to MAX_POINTS points, so its schemas are built for speed: points are
TypedDicts, not models, and the batch's models are plain pydantic ones, not ninja Schemas, whose
wrapping validator turns the JSON into Python objects before checking it. Pydantic then
validates the batch straight from its JSON bytes, about 7× as fast.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
    with_config,
)
from typing_extensions import NotRequired, TypedDict

from webapp.common.inputs import Finite, JsonObject, Moment, Step, Text
from webapp.runs.models import METRIC_KEY_MAX_LENGTH
from webapp.runs.selectors import TOKEN_VALUE_KEYS

INT_MAX = 2**31 - 1  # a PositiveIntegerField's ceiling on Postgres
MAX_POINTS = 100_000
MAX_ROLLOUTS = 10_000

# Plain str: a batch's keys are checked for NUL by one scan of its bytes (routers/metrics.py),
# and its JSON parser refuses lone surrogates.
MetricKey = Annotated[str, Field(min_length=1, max_length=METRIC_KEY_MAX_LENGTH)]
Index = Annotated[int, Field(ge=0, le=INT_MAX)]


class ErrorOut(Schema):
    detail: Any = Field(description="What went wrong: a sentence, or for a 422 one "
                                    "{loc, msg, type} per bad field.")


# Every operation can answer these: 400 for an address or a body that is not what rlab reads
# (webapp.common.inputs), 422 for a parameter of the wrong type. Writes add 403; some 409 and 413.
LIST_ERRORS = {400: ErrorOut, 401: ErrorOut, 422: ErrorOut}
READ_ERRORS = {**LIST_ERRORS, 404: ErrorOut}
WRITE_ERRORS = {**READ_ERRORS, 403: ErrorOut}


# Projects and experiments ------------------------------------------------------------------------

class TeamOut(Schema):
    id: int
    name: str


class ProjectOut(Schema):
    id: int
    name: str
    description: str
    team: TeamOut
    created_at: datetime
    url: str = Field(description="The project's page in the web app.")

    @staticmethod
    def resolve_url(project) -> str:
        return project.get_absolute_url()


class ExperimentIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=120)]
    description: Text = ""
    kind: Literal["training", "evaluation"] = "training"
    config: JsonObject = Field(
        default_factory=dict,
        description="Settings of a training run (training.spec.config.RunConfig) or of an "
                    "evaluation (training.spec.evaluation_config.EvalConfig, less its model); "
                    "those left out take their defaults.")


class ExperimentOut(Schema):
    id: int
    project_id: int
    name: str
    description: str
    kind: str
    config: dict[str, Any]
    author: str
    created_at: datetime
    updated_at: datetime
    url: str

    @staticmethod
    def resolve_author(experiment) -> str:
        return experiment.author.username

    @staticmethod
    def resolve_url(experiment) -> str:
        return experiment.get_absolute_url()


# Runs and checkpoints ----------------------------------------------------------------------------

class LaunchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[Text, Field(max_length=500)] = Field(
        "", description="An evaluation only: the model to evaluate (builtin:…, a folder on the "
                        "worker, or a hub id).")
    checkpoint_id: int | None = Field(
        None, description="An evaluation only: a checkpoint of a run in the same project.")
    seeds: list[int] | None = Field(
        None, max_length=10_000,
        description="A training experiment only: launch one run per seed, all or none (at most "
                    "100); the answer is then the list of runs.")

    @model_validator(mode="after")
    def _one_target(self) -> LaunchIn:
        if self.model.strip() and self.checkpoint_id is not None:
            raise ValueError("Give a model or a checkpoint_id to evaluate, not both.")
        if self.seeds is not None and (self.model.strip() or self.checkpoint_id is not None):
            raise ValueError("Seeds are for a training experiment's runs; an evaluation takes "
                             "a model or a checkpoint_id.")
        return self


class CheckpointOut(Schema):
    id: int
    run_id: int
    step: int
    path: str
    final: bool
    created_at: datetime


class CheckpointListItem(CheckpointOut):
    size_bytes: int | None = Field(description="Bytes in its folder; null when the folder is "
                                               "gone or not visible from the web server.")


class ProgressOut(Schema):
    step: int
    total: int
    fraction: float


class RunOut(Schema):
    id: int
    experiment_id: int
    project_id: int
    number: int
    name: str = Field(description="The experiment's name and the run's number: `grpo #3`.")
    run_name: str = Field(description="A tracked run's own name, as its script gave it (MLflow's "
                                      "run_name, rlab.init's name); empty otherwise.")
    kind: str
    status: str
    active: bool = Field(description="Whether the run may still change: not yet ended.")
    progress: ProgressOut
    launched_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str

    @staticmethod
    def resolve_project_id(run) -> int:
        return run.experiment.project_id

    @staticmethod
    def resolve_name(run) -> str:
        return str(run)

    @staticmethod
    def resolve_run_name(run) -> str:
        return run.name

    @staticmethod
    def resolve_kind(run) -> str:
        return run.experiment.kind

    @staticmethod
    def resolve_active(run) -> bool:
        return not run.is_terminal

    @staticmethod
    def resolve_progress(run) -> dict:
        return {"step": run.progress_step, "total": run.progress_total,
                "fraction": run.progress_fraction}

    @staticmethod
    def resolve_launched_by(run) -> str:
        return run.launched_by.username

    @staticmethod
    def resolve_url(run) -> str:
        return run.get_absolute_url()


class RunDetailOut(RunOut):
    config: dict[str, Any] = Field(description="The config snapshot the run runs with; a tracked "
                                               "run's logged parameters.")
    tags: dict[str, str] = Field(description="A tracked run's tags, as its script set them.")
    error: str = Field(description="Why it failed; empty otherwise.")
    device: str
    worker: str
    attempts: int
    heartbeat_at: datetime | None
    evaluated_checkpoint: CheckpointOut | None = Field(
        description="An evaluation job's checkpoint; null for a base model or a training run.")
    resumed_from: CheckpointOut | None

    @staticmethod
    def resolve_error(run) -> str:
        return run.error_message

    @staticmethod
    def resolve_tags(run) -> dict[str, str]:
        return run.tracked_tags


# Metrics -----------------------------------------------------------------------------------------

@with_config(ConfigDict(extra="forbid"))
class PointIn(TypedDict):
    key: MetricKey
    step: Step
    value: Finite
    time: NotRequired[Moment]


class SeriesIn(BaseModel):
    """One metric's points as columns: the compact form for many steps of one key."""

    model_config = ConfigDict(extra="forbid")

    key: MetricKey
    steps: list[Step]
    values: list[Finite]
    times: list[Moment] | None = None

    @model_validator(mode="after")
    def _same_lengths(self) -> SeriesIn:
        lengths = {len(self.steps), len(self.values), *([len(self.times)] if self.times else [])}
        if len(lengths) > 1:
            raise ValueError(f"{self.key}: steps, values and times must be as long as each "
                             "other")
        return self


class MetricsIn(BaseModel):
    """A batch of points, as rows (`points`), as columns (`series`), or both. `time` is when the
    value was measured: ISO 8601 with a time zone, or Unix seconds (milliseconds past 2e10); the
    server's clock when left out. A (key, step) the run already has is kept as stored, so a batch
    sent again changes nothing."""

    model_config = ConfigDict(extra="forbid")

    points: list[PointIn] = Field(default_factory=list)
    series: list[SeriesIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_too_many(self) -> MetricsIn:
        count = len(self.points) + sum(len(s.steps) for s in self.series)
        if count > MAX_POINTS:
            raise ValueError(f"{count:,} points in one request; send at most {MAX_POINTS:,} "
                             "at a time")
        return self


class WrittenOut(Schema):
    received: int = Field(description="Items in the batch, replays of stored ones included.")


class MetricSeriesOut(Schema):
    keys: list[str] = Field(description="Every metric the run recorded.")
    active: bool
    width: int = Field(description="Bucket width in steps; 1 means every point is there.")
    series: dict[str, list[list[int | float | None]]] = Field(
        description="{key: [steps, values, wall times in Unix seconds]}; NaN and ±inf as null.")


# Rollouts ----------------------------------------------------------------------------------------

class TokensIn(Schema):
    """Per-token arrays of one completion, for the token view; each as long as `text`."""

    model_config = ConfigDict(extra="forbid")

    text: list[Text]
    logprob: list[Finite | None] | None = None
    entropy: list[Finite | None] | None = None
    kl: list[Finite | None] | None = None
    advantage: list[Finite | None] | None = None
    process: list[Finite | None] | None = Field(
        None, description="PRL: the process term of each token's advantage.")
    conflict: list[Finite | None] | None = Field(
        None, description="GTPO: 1 on a conflict token, 0 elsewhere.")
    teacher_kl: list[Finite | None] | None = Field(
        None, description="KDRL: each token's KL estimate to the teacher.")

    @model_validator(mode="after")
    def _same_lengths(self) -> TokensIn:
        for name in TOKEN_VALUE_KEYS:
            values = getattr(self, name)
            if values is not None and len(values) != len(self.text):
                raise ValueError(f"tokens.{name} has {len(values)} values for "
                                 f"{len(self.text)} tokens")
        return self


class RolloutIn(Schema):
    model_config = ConfigDict(extra="forbid")

    prompt: Text
    completion: Text
    reward: Finite
    rewards: dict[Text, Finite] = Field(default_factory=dict,
                                       description="Reward per reward function.")
    advantage: Finite | None = None
    group: Index = Field(0, description="The prompt's group within the step.")
    sample_index: Index = Field(0, description="The completion's index in its group.")
    prompt_id: Annotated[Text, Field(max_length=200)] = ""
    completion_tokens: Index | None = None
    truncated: bool = False
    group_degenerate: bool | None = Field(
        None, description="Every reward of the whole group was equal; when left out, decided "
                          "from this batch's items of the group.")
    extra: JsonObject = Field(default_factory=dict)
    tokens: TokensIn | None = None


class RolloutsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    step: Step
    items: list[RolloutIn] = Field(max_length=MAX_ROLLOUTS)

    @model_validator(mode="after")
    def _distinct_samples(self) -> RolloutsIn:
        seen: dict[tuple[int, int], int] = {}
        for i, item in enumerate(self.items):
            where = (item.group, item.sample_index)
            if where in seen:
                raise ValueError(f"items {seen[where]} and {i} are both group {where[0]}, "
                                 f"sample {where[1]}: give each completion its own group and "
                                 "sample_index")
            seen[where] = i
        return self


class RolloutOut(Schema):
    id: int
    step: int
    group: int
    sample_index: int
    prompt_id: str
    prompt: str
    completion: str
    reward: float
    rewards: dict[str, Any]
    advantage: float | None
    completion_tokens: int | None
    truncated: bool
    group_degenerate: bool | None
    extra: dict[str, Any]
    tokens: dict[str, Any] | None

    @staticmethod
    def resolve_tokens(rollout) -> dict | None:
        return rollout.token_data


class RolloutPageOut(Schema):
    items: list[RolloutOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on "
                                                "the last one.")
