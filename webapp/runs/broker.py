"""The one port between rlab and its broker: send a run to its queue, send another task, and count
what a queue holds.

Both answer within seconds whatever state the broker is in. Celery's defaults retry a publish
and wait on a broker that accepts connections but never answers (a hung Redis) for as long as it
hangs; a launch in the web server must not. A run whose sending fails stays queued, marked as not
accepted, and the workers' housekeeping sends it again (webapp.runs.services.runs_requeue).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from kombu import Connection
from kombu.exceptions import ChannelError, KombuError

from webapp.config.celery import app

logger = logging.getLogger(__name__)

# Seconds to connect to the broker, and to wait for any one answer from it.
TIMEOUT_SECONDS = 3


@contextmanager
def broker_connection() -> Iterator[Connection]:
    """A connection of its own that tries once (no retries) and times out every wait."""
    options = {"max_retries": 0, "socket_connect_timeout": TIMEOUT_SECONDS,
               "socket_timeout": TIMEOUT_SECONDS}
    with app.connection_for_write(connect_timeout=TIMEOUT_SECONDS,
                                  transport_options=options) as connection:
        yield connection


def run_send(*, run_id: int, queue: str, connection: Connection) -> bool:
    """Publish the run's `run_execute` message to `queue` once; False (logged) when the broker
    could not be reached or did not answer in time."""
    try:
        app.send_task("worker.tasks.run_execute", args=[run_id], queue=queue,
                      connection=connection, retry=False)
    except _broker_errors(connection) as exc:
        logger.warning("run %s: the broker did not take it (%s); it stays queued and is sent "
                       "again when the broker answers", run_id, exc)
        return False
    return True


def task_send(*, task: str, args: list, what: str) -> bool:
    """Publish one message of the worker task named `task` to the default queue, once, on a
    connection of its own; False (logged, naming `what` it was for) when the broker could not be
    reached or did not answer in time."""
    with broker_connection() as connection:
        try:
            app.send_task(task, args=args, connection=connection, retry=False)
        except _broker_errors(connection) as exc:
            logger.warning("%s: the broker did not take it (%s)", what, exc)
            return False
    return True


def queue_depth(*, queue: str, connection: Connection) -> int | None:
    """Messages waiting in `queue` (those a worker has taken are not counted); None when the
    broker cannot tell."""
    try:
        with connection.channel() as channel:
            return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # the queue does not exist: nothing was ever sent to it, or all were taken
    except _broker_errors(connection) as exc:
        logger.warning("cannot count the messages in queue %s: %s", queue, exc)
        return None


def _broker_errors(connection: Connection) -> tuple[type[BaseException], ...]:
    """What a broker that is down or hung raises: kombu's own errors, and its transport's client
    errors where kombu does not wrap them (a socket timeout may also be a plain OSError)."""
    return (KombuError, ChannelError, OSError, *connection.connection_errors,
            *connection.channel_errors)
