"""The Optuna side of a sweep: its study, kept in rlab's own database through Optuna's RDB
storage (Postgres in full mode and tests, the SQLite file embedded), the search space as Optuna
distributions, and the sampler and pruner a sweep's method names.

Optuna creates its own tables (studies, trials, params, intermediate values) in that database on
first use. They are not Django's: `manage.py flush` leaves them, and no Django table refers to
them (a sweep names its study by `study_name`).

Optuna writes through its own SQLAlchemy connections. On SQLite a writer holds the whole file,
so no Optuna call may run inside a Django transaction that has written (the two connections
would wait on each other): the services call Optuna before or after their transactions.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import quote

import optuna
from django.db import connection
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from sqlalchemy.pool import NullPool

from training.spec.config import RunConfig
from webapp.sweeps.models import Sweep, SweepMethod

optuna.logging.set_verbosity(optuna.logging.WARNING)

_storages: dict[tuple[int, str], optuna.storages.RDBStorage] = {}
_storages_lock = threading.Lock()


def storage_url() -> str:
    """A SQLAlchemy URL for the database Django uses now (the test database in tests)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor != "postgresql":
        raise RuntimeError(f"sweeps keep their studies in Postgres or SQLite, not "
                           f"{connection.vendor}")
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql+psycopg://{credentials}{host}{port}/{quote(db['NAME'], safe='')}"


def study_storage() -> optuna.storages.RDBStorage:
    """The process's storage (one SQLAlchemy engine per process and database: an engine must
    not cross a Celery worker's fork). It keeps no connection between calls (NullPool), as
    Django keeps none past a request here: a web server or worker holding idle connections would
    use up Postgres's, and a restarted Postgres costs no failed call."""
    key = (os.getpid(), storage_url())
    with _storages_lock:
        storage = _storages.get(key)
        if storage is None:
            storage = _storages[key] = optuna.storages.RDBStorage(
                key[1], engine_kwargs={"poolclass": NullPool})
        return storage


def distributions(axes: dict[str, dict[str, list]]) -> dict[str, BaseDistribution]:
    """Each axis as Optuna's distribution: listed values are categorical; a range of an integer
    setting draws integers."""
    kinds = {f.name: type(f.default) for f, _ in RunConfig.every_field()}
    found: dict[str, BaseDistribution] = {}
    for name, axis in axes.items():
        kind, given = next(iter(axis.items()))
        if kind == "values":
            found[name] = CategoricalDistribution(given)
        elif kinds[name] is int:
            found[name] = IntDistribution(int(given[0]), int(given[1]),
                                          log=kind == "log_uniform")
        else:
            found[name] = FloatDistribution(float(given[0]), float(given[1]),
                                            log=kind == "log_uniform")
    return found


def sampler_for(method: str) -> optuna.samplers.BaseSampler:
    if method in (SweepMethod.GRID, SweepMethod.RANDOM):
        # A grid's trials are its combinations, enqueued in order (trials_ask): the sampler
        # draws nothing for them.
        return optuna.samplers.RandomSampler()
    # Trials asked while others still run: the constant liar keeps TPE from proposing the same
    # point to each of them.
    return optuna.samplers.TPESampler(constant_liar=True)


def pruner_for(sweep: Sweep) -> optuna.pruners.BasePruner:
    if not sweep.pruner:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.pruner_startup_trials,
                                       n_warmup_steps=sweep.pruner_warmup_steps)


def study_create(*, study_name: str, method: str, direction: str) -> optuna.Study:
    return optuna.create_study(storage=study_storage(), study_name=study_name,
                               direction=direction, sampler=sampler_for(method))


def study_of(sweep: Sweep) -> optuna.Study:
    """The sweep's study, with its sampler and pruner (Optuna does not store them)."""
    return optuna.load_study(study_name=sweep.study_name, storage=study_storage(),
                             sampler=sampler_for(sweep.method),
                             pruner=pruner_for(sweep))


def study_delete(study_name: str) -> None:
    try:
        optuna.delete_study(study_name=study_name, storage=study_storage())
    except KeyError:
        pass  # never created


def trials_ask(study: optuna.Study, axes: dict[str, dict[str, list]], count: int,
               points: list[dict[str, Any]] | None = None) -> list[optuna.Trial]:
    """Ask `count` trials over the axes; a grid's `points` are enqueued first, so its trials
    come in the order of its combinations."""
    space = distributions(axes)
    for point in points or []:
        study.enqueue_trial(point)
    return [study.ask(space) for _ in range(count)]
