"""A sweep's definition, as YAML (`rlab sweep`), the API's JSON and the browser form give it,
parsed and checked against the base experiment's settings before anything is created.

    experiment: grpo-base          # its name or id, in the project
    name: lr sweep
    method: tpe                    # grid, random or tpe
    objective: {metric: eval/accuracy, direction: maximize}
    pruner: median                 # or {median: {startup_trials: 2, warmup_steps: 5}}; none
    budget: 12                     # runs, at most RLAB_SWEEP_MAX_RUNS
    max_concurrent: 2              # runs at once
    seeds: [1, 2]                  # every trial runs once per seed; its objective is the mean
    axes:
      learning_rate: {log_uniform: [1e-7, 1e-5]}
      beta: {values: [0.0, 0.04]}
      epsilon: {uniform: [0.1, 0.3]}

Every problem is reported at once, by where it is (`axes.beta`, `budget`), in
DefinitionError.errors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import product
from typing import Any

from django.conf import settings

from training.spec.config import ConfigError, RunConfig
from training.spec.settings import coerce
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.models import Project
from webapp.runs.services import MAX_SEEDS
from webapp.sweeps.models import Sweep, SweepMethod

AXIS_KINDS = ("values", "uniform", "log_uniform")
DIRECTIONS = ("maximize", "minimize")
KEYS = {"experiment", "name", "method", "objective", "pruner", "budget", "max_concurrent",
        "seeds", "axes"}
MAX_VALUES = 1000
NAME_MAX = Sweep._meta.get_field("name").max_length
METRIC_MAX = Sweep._meta.get_field("objective").max_length
# Optuna's own default: the median is meaningless over fewer finished trials.
DEFAULT_STARTUP_TRIALS = 5


class DefinitionError(ValueError):
    """A definition that cannot be swept; `errors` maps where each problem is to what it is."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{where}: {message}" for where, message in errors.items()))


@dataclass(frozen=True)
class Definition:
    """A checked definition, ready for webapp.sweeps.services.sweep_create."""

    experiment: Experiment
    base_config: dict[str, Any]
    name: str
    method: str
    metric: str
    direction: str
    pruner: bool
    pruner_startup_trials: int
    pruner_warmup_steps: int
    budget: int
    max_concurrent: int
    seeds: list[int]
    axes: dict[str, dict[str, list]]

    @property
    def trials(self) -> int:
        """How many trials it runs at most (each once per seed)."""
        if self.method == SweepMethod.GRID:
            return math.prod(len(axis["values"]) for axis in self.axes.values())
        return self.budget // (len(self.seeds) or 1)


def definition_parse(data: Any, *, project: Project) -> Definition:
    """The definition `data` (a dict, as YAML or JSON gives it) for a sweep of `project`, every
    axis checked against its setting's type, bounds and choices, and the trial configs it makes
    checked as whole configs; DefinitionError naming every problem."""
    if not isinstance(data, dict):
        raise DefinitionError({"definition": "expected an object with experiment, name, "
                                             "method, objective, budget, max_concurrent, axes"})
    errors: dict[str, str] = {}
    errors.update({str(key): "unknown key; known: " + ", ".join(sorted(KEYS))
                   for key in data if key not in KEYS})
    experiment = _experiment(data.get("experiment"), project, errors)
    name = _name(data.get("name"), project, errors)
    method = data.get("method")
    if method not in SweepMethod.values:
        errors["method"] = f"must be one of: {', '.join(SweepMethod.values)}"
    metric, direction = _objective(data.get("objective"), errors)
    pruner, startup, warmup = _pruner(data.get("pruner"), errors)
    budget = _count(data.get("budget"), "budget", errors,
                    maximum=settings.RLAB_SWEEP_MAX_RUNS,
                    over=f"at most {settings.RLAB_SWEEP_MAX_RUNS} runs "
                         f"(RLAB_SWEEP_MAX_RUNS)")
    max_concurrent = _count(data.get("max_concurrent"), "max_concurrent", errors)
    seeds = _seeds(data.get("seeds", []), errors)
    base_config: dict[str, Any] = {}
    if experiment is not None:
        try:
            base_config = RunConfig.from_dict(experiment.config).to_dict()
        except ConfigError as exc:
            errors["experiment"] = f"its config cannot run: {exc}"
            experiment = None
    axes = _axes(data.get("axes"), base_config, method, errors) if experiment else {}
    if seeds and "seed" in axes:
        errors["seeds"] = ("the seed is an axis already: give seeds, or a seed axis, not "
                           "both")
    if pruner and seeds:
        errors["pruner"] = ("the median pruner compares one run per trial, and with seeds a "
                            "trial is the mean of several runs: drop the seeds or the pruner")
    if errors:
        raise DefinitionError(errors)
    definition = Definition(
        experiment=experiment, base_config=base_config, name=name, method=method,
        metric=metric, direction=direction, pruner=pruner, pruner_startup_trials=startup,
        pruner_warmup_steps=warmup, budget=budget, max_concurrent=max_concurrent, seeds=seeds,
        axes=axes)
    _check_budget(definition, errors)
    if not errors:
        _check_configs(definition, errors)
    if errors:
        raise DefinitionError(errors)
    return definition


def _experiment(value: Any, project: Project, errors: dict[str, str]) -> Experiment | None:
    if value is None or value == "":
        errors["experiment"] = "name the base experiment (its name or id)"
        return None
    experiments = project.experiments.all()
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        errors["experiment"] = "give the base experiment's name or id"
        return None
    found = (experiments.filter(pk=value).first() if isinstance(value, int)
             else experiments.filter(name=value).first())
    if found is None and isinstance(value, str) and value.isdigit():
        found = experiments.filter(pk=int(value)).first()
    if found is None:
        errors["experiment"] = f"this project has no experiment {value!r}"
        return None
    if found.kind != ExperimentKind.TRAINING:
        errors["experiment"] = (f"{found.name} is an experiment of kind {found.kind}: a sweep "
                                f"launches training runs; choose a training experiment")
        return None
    return found


def _name(value: Any, project: Project, errors: dict[str, str]) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        errors["name"] = "give the sweep a name"
    elif len(name) > NAME_MAX:
        errors["name"] = f"at most {NAME_MAX} characters"
    elif "\x00" in name:
        errors["name"] = "must not hold a NUL character"
    elif project.sweeps.filter(name=name).exists():
        errors["name"] = f"this project has a sweep named {name!r} already"
    return name


def _objective(value: Any, errors: dict[str, str]) -> tuple[str, str]:
    if not isinstance(value, dict):
        errors["objective"] = "give {metric: <a metric key>, direction: maximize or minimize}"
        return "", ""
    unknown = sorted(set(value) - {"metric", "direction"})
    metric = value.get("metric")
    direction = value.get("direction")
    if unknown:
        errors["objective"] = f"unknown keys: {', '.join(map(str, unknown))}"
    if not isinstance(metric, str) or not metric.strip():
        errors["objective.metric"] = "name the metric to optimise, e.g. eval/pass@1"
        metric = ""
    elif len(metric.strip()) > METRIC_MAX or "\x00" in metric:
        errors["objective.metric"] = f"a metric key of at most {METRIC_MAX} characters"
    if direction not in DIRECTIONS:
        errors["objective.direction"] = "must be maximize or minimize"
    return (metric or "").strip(), direction or ""


def _pruner(value: Any, errors: dict[str, str]) -> tuple[bool, int, int]:
    if value in (None, "none", False):
        return False, DEFAULT_STARTUP_TRIALS, 0
    if value == "median":
        return True, DEFAULT_STARTUP_TRIALS, 0
    if isinstance(value, dict) and set(value) == {"median"}:
        options = value["median"] or {}
        if isinstance(options, dict) and set(options) <= {"startup_trials", "warmup_steps"}:
            startup = _count(options.get("startup_trials", DEFAULT_STARTUP_TRIALS),
                             "pruner.startup_trials", errors, minimum=0)
            warmup = _count(options.get("warmup_steps", 0), "pruner.warmup_steps", errors,
                            minimum=0)
            return True, startup, warmup
    errors["pruner"] = ("give none, median, or {median: {startup_trials: N, warmup_steps: N}}")
    return False, DEFAULT_STARTUP_TRIALS, 0


def _count(value: Any, where: str, errors: dict[str, str], *, minimum: int = 1,
           maximum: int = 2**31 - 1, over: str = "") -> int:
    if value is None:
        errors[where] = "give a whole number"
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            errors[where] = f"expected a whole number, got {value!r}"
            return 0
    if value < minimum:
        errors[where] = f"must be at least {minimum}"
    elif value > maximum:
        errors[where] = over or f"must be at most {maximum}"
    return value


def _seeds(value: Any, errors: dict[str, str]) -> list[int]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        errors["seeds"] = "give a list of seeds, e.g. [1, 2, 3]"
        return []
    seed_field = _field("seed", RunConfig.fields())
    seeds = []
    for seed in value:
        try:
            seeds.append(coerce(seed_field, seed, paths=False))
        except ValueError as exc:
            errors["seeds"] = f"seed {seed!r}: {exc}"
            return []
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:
        errors["seeds"] = f"each seed once: {', '.join(map(str, twice))} given twice"
    elif len(seeds) > MAX_SEEDS:
        errors["seeds"] = f"at most {MAX_SEEDS} seeds"
    return seeds


def _field(name: str, fields) -> dataclasses.Field | None:
    return next((f for f in fields if f.name == name), None)


def _axes(value: Any, base_config: dict[str, Any], method: Any,
          errors: dict[str, str]) -> dict[str, dict[str, list]]:
    """Each axis checked alone: its setting exists for the experiment's algorithm, its values
    or range ends are values that setting takes."""
    if not isinstance(value, dict) or not value:
        errors["axes"] = ("give at least one axis: a setting with {values: [...]}, "
                          "{uniform: [low, high]} or {log_uniform: [low, high]}")
        return {}
    fields = RunConfig.fields_for(base_config["algorithm"])
    axes = {}
    for name, spec in value.items():
        where = f"axes.{name}"
        f = _field(name, fields)
        if f is None:
            known = any(g.name == name for g, _ in RunConfig.every_field())
            errors[where] = (f"a setting of another algorithm than {base_config['algorithm']}"
                             if known else "unknown setting")
            continue
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in AXIS_KINDS:
            errors[where] = ("give one of {values: [...]}, {uniform: [low, high]}, "
                             "{log_uniform: [low, high]}")
            continue
        kind, given = next(iter(spec.items()))
        try:
            axes[name] = {kind: (_values(f, given) if kind == "values"
                                 else _range(f, kind, given))}
        except ValueError as exc:
            errors[where] = str(exc)
            continue
        if method == SweepMethod.GRID and kind != "values":
            errors[where] = ("a grid takes listed values only: give values, or choose the "
                             "random or tpe method")
    return axes


def _values(f: dataclasses.Field, given: Any) -> list:
    if not isinstance(given, list):
        raise ValueError("values: give a list, e.g. [0.0, 0.04]")
    if not given:
        raise ValueError("values: the list is empty; give at least one value")
    if len(given) > MAX_VALUES:
        raise ValueError(f"values: at most {MAX_VALUES}")
    values = []
    for raw in given:
        try:
            value = coerce(f, raw, paths=False)
        except ValueError as exc:
            raise ValueError(f"value {raw!r}: {exc}") from None
        if value in values:
            raise ValueError(f"value {raw!r} is listed twice")
        values.append(value)
    return values


def _range(f: dataclasses.Field, kind: str, given: Any) -> list:
    number = type(f.default)
    if number not in (int, float):
        raise ValueError(f"{kind}: {f.name} is not a number; list its values instead")
    if not isinstance(given, list) or len(given) != 2:
        raise ValueError(f"{kind}: give [low, high]")
    ends = []
    for which, raw in zip(("low", "high"), given):
        try:
            ends.append(coerce(f, raw, paths=False))
        except ValueError as exc:
            raise ValueError(f"{kind}: {which} {raw!r}: {exc}") from None
    low, high = ends
    if low >= high:
        raise ValueError(f"{kind}: low ({low:g}) must be below high ({high:g})")
    if kind == "log_uniform" and low <= 0:
        raise ValueError(f"log_uniform: low ({low:g}) must be above 0 on a log scale")
    return [low, high]


def _check_budget(definition: Definition, errors: dict[str, str]) -> None:
    per_trial = len(definition.seeds) or 1
    if definition.method == SweepMethod.GRID:
        runs = definition.trials * per_trial
        if runs > definition.budget:
            seeds = f" × {per_trial} seeds" if definition.seeds else ""
            errors["budget"] = (f"the grid has {definition.trials} combinations{seeds} = "
                                f"{runs} runs, over the budget of {definition.budget}: raise "
                                f"the budget or list fewer values")
    elif definition.budget < per_trial:
        errors["budget"] = (f"{definition.budget} runs cannot hold one trial of "
                            f"{per_trial} seeds")
    elif definition.budget % per_trial:
        errors["budget"] = (f"each trial runs once per seed: give a multiple of "
                            f"{per_trial} runs")


def _check_configs(definition: Definition, errors: dict[str, str]) -> None:
    """Build trial configs through RunConfig.from_dict: a grid's every combination; for ranges,
    each axis at each of its values or ends with the others at their first. A setting valid
    alone may clash with another (a β > 0 without a reference)."""
    axes = definition.axes
    firsts = {name: next(iter(axis.values()))[0] for name, axis in axes.items()}
    if definition.method == SweepMethod.GRID:
        points = [dict(zip(axes, values))
                  for values in product(*(axis["values"] for axis in axes.values()))]
    else:
        points = [{**firsts, name: value}
                  for name, axis in axes.items() for value in next(iter(axis.values()))]
    for point in points:
        for seed in definition.seeds or [None]:
            trial = {**point, **({"seed": seed} if seed is not None else {})}
            try:
                RunConfig.from_dict({**definition.base_config, **trial})
            except ConfigError as exc:
                shown = ", ".join(f"{name}={value!r}" for name, value in trial.items())
                for field_name, message in exc.errors.items():
                    where = f"axes.{field_name}" if field_name in axes else "axes"
                    errors.setdefault(where, f"the trial {shown} cannot run: "
                                             f"{field_name}: {message}")
                return
