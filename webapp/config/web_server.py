"""How rlab's ASGI application is served: one command line, so that every way of starting the web
server (manage.py serve, docker-compose, the tests and benchmarks) trusts the same proxies.

uvicorn believes X-Forwarded-For from loopback by default, so anyone on the machine, or any
request relayed through a local process, could choose the client address that sign-in lockout
counts failures by. rlab believes forwarded headers only from RLAB_TRUSTED_PROXIES.

`python -m webapp.config.web_server --host 0.0.0.0 --port 8000` runs that command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from django.conf import settings


def uvicorn_command(*, host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The uvicorn command line serving rlab on `host`:`port`, `extra` arguments appended
    (e.g. `--workers 2`). Forwarded headers count only when they come from a trusted proxy."""
    command = [sys.executable, "-m", "uvicorn", "webapp.config.asgi:application",
               "--host", host, "--port", str(port)]
    if settings.RLAB_TRUSTED_PROXIES:
        command += ["--proxy-headers", "--forwarded-allow-ips",
                    ",".join(settings.RLAB_TRUSTED_PROXIES)]
    else:
        command.append("--no-proxy-headers")
    return [*command, *extra]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve rlab's web app with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, extra = parser.parse_known_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings.local")
    command = uvicorn_command(host=args.host, port=args.port, extra=extra)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
