"""Scratch Postgres databases for the benchmarks: created empty, dropped afterwards, with rlab's
Django set up on one of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty database `name` on admin_url's server (its user may create databases),
    dropped afterwards even with connections still open; yields its URL."""
    _execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    base = urlsplit(admin_url)
    try:
        yield f"{base.scheme}://{base.netloc}/{name}"
    finally:
        _execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def rlab_django(database_url: str) -> Iterator[None]:
    """rlab's Django (test settings) on `database_url`, migrated; its connections closed after."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.config.settings.test"
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    try:
        yield
    finally:
        connections.close_all()


def checkpoint(admin_url: str) -> None:
    """Have Postgres write out its dirty buffers now, so that the next measurement does not pay
    for what an earlier one wrote."""
    _execute(admin_url, "CHECKPOINT")


def _execute(admin_url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)
