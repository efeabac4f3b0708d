"""What each tracking call takes, as MLflow's client sends it (mlflow/protos/service.proto, in
JSON): checked field by field against what rlab stores (webapp.common.inputs) before a view acts.
A field MLflow has and rlab does not use (a logged model as an input) is ignored, as MLflow's
server ignores what it does not know. Numbers may come as JSON strings, as protobuf's JSON writes
int64.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from webapp.common.inputs import BIGINT_MAX, BIGINT_MIN, Text
from webapp.runs.models import METRIC_KEY_MAX_LENGTH


def _moment(ms: int) -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise PydanticCustomError("time_range", "A time in milliseconds since 1970, between "
                                                "the years 1 and 9999.") from None


def _not_a_boolean(value):
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "A number, or \"NaN\", \"Infinity\", "
                                                "\"-Infinity\".")
    return value


Required = Annotated[Text, Field(min_length=1)]
Moment = Annotated[int, AfterValidator(_moment)]
"""MLflow's times: milliseconds since 1970, as a datetime."""
Step = Annotated[int, Field(ge=BIGINT_MIN, le=BIGINT_MAX)]
"""MLflow's steps: any int64, negative ones included."""
MetricValue = Annotated[float, BeforeValidator(_not_a_boolean)]
"""Any double, NaN and ±Infinity included, as MLflow keeps them; protobuf's JSON writes those
three as the strings "NaN", "Infinity" and "-Infinity"."""


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class RunBody(Body):
    """A call about one run: `run_id`, or `run_uuid` as older clients send it."""

    run_id: Text | None = None
    run_uuid: Text | None = None

    @property
    def run(self) -> str | None:
        return self.run_id or self.run_uuid or None


class ExperimentByName(Body):
    experiment_name: Required


class ExperimentById(Body):
    experiment_id: Required


class ExperimentCreate(Body):
    name: Required


class Pair(Body):
    """A parameter or a tag."""

    key: Required
    value: Text = ""


class Metric(Body):
    key: Annotated[Required, Field(max_length=METRIC_KEY_MAX_LENGTH)]
    value: MetricValue
    timestamp: Moment
    step: Step | None = None


class RunCreate(Body):
    experiment_id: Required
    run_name: Text | None = None
    start_time: Moment | None = None
    tags: list[Pair] = Field(default_factory=list)


class RunUpdate(RunBody):
    run_name: Text | None = None
    status: Text | None = None
    end_time: Moment | None = None


class LogMetric(RunBody, Metric):
    pass


class LogPair(RunBody, Pair):
    pass


class LogBatch(RunBody):
    metrics: list[Metric] = Field(default_factory=list)
    params: list[Pair] = Field(default_factory=list)
    tags: list[Pair] = Field(default_factory=list)


def _limited(size: int):
    return Annotated[Text, Field(max_length=size)]


class InputTag(Body):
    """A tag of a logged input, such as mlflow.data.context (training, evaluation…)."""

    key: Annotated[Required, Field(max_length=255)]
    value: _limited(500)


class Dataset(Body):
    """A dataset reference, within MLflow's limits."""

    name: Annotated[Required, Field(max_length=500)]
    digest: Annotated[Required, Field(max_length=36)]
    source_type: Annotated[Required, Field(max_length=100)]
    source: _limited(65535)
    schema_: Annotated[_limited(1048575), Field(alias="schema")] = ""
    profile: _limited(1048575) = ""


class DatasetInput(Body):
    tags: list[InputTag] = Field(default_factory=list)
    dataset: Dataset


class LogInputs(RunBody):
    """log_input: datasets (a logged model as an input is not kept)."""

    datasets: list[DatasetInput] = Field(default_factory=list, max_length=1000)
