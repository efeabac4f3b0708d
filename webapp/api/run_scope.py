"""What a run's own token reaches (webapp.api.run_tokens): its run, through the requests that
the real clients make for one run, and nothing else.

Deny by default: a request with a run's token passes only when its route is in a table of
allowed routes and that route's check finds the request names the token's run (its id in the
address or the body, its experiment, its artifacts or logged models). Anything else is a 404,
worded the same whether or not what it names exists: another run of the same project, another
project, a list, a page. The check runs in front of every view (webapp.config.middleware), with
this module's table for the REST API and webapp.mlflow_compat.run_scope's for the tracking
endpoints; the views then act as the run's launcher, with their own role checks.

The REST routes are the SDK's (client/rlab): a run's metrics, rollouts, parameters, heartbeat
and end, and reading back the run, its metrics, rollouts, log and checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from webapp.api.models import ApiToken


@dataclass(frozen=True)
class RunScope:
    """The run a token reaches, and what names it."""

    run_id: int
    experiment_id: int
    experiment_name: str
    project_id: int

    @classmethod
    def of(cls, token: ApiToken) -> RunScope:
        run = token.run
        return cls(run_id=run.pk, experiment_id=run.experiment_id,
                   experiment_name=run.experiment.name, project_id=run.experiment.project_id)

    def is_run(self, value: Any) -> bool:
        """Whether `value`, an id as a client sends it (digits), is this run's."""
        return _same_id(value, self.run_id)

    def is_experiment(self, value: Any) -> bool:
        return _same_id(value, self.experiment_id)


def _same_id(value: Any, pk: int) -> bool:
    """Digits only, as the views read ids: "+5", " 5" or "5.0" name no run here."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    return text.isascii() and text.isdigit() and len(text) < 19 and int(text) == pk


# A check: whether the request (its URL's arguments, its body) names only the scope's run.
Check = Callable[[HttpRequest, Mapping[str, Any], RunScope], bool]
# (HTTP method, the URL pattern as Django resolved it: request.resolver_match.route)
Route = tuple[str, str]


def run_in_address(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    return scope.is_run(kwargs.get("run_id"))


API_ROUTES: dict[Route, Check] = {
    **{("GET", f"api/runs/<run_id>{tail}"): run_in_address
       for tail in ("", "/metrics", "/rollouts", "/logs", "/checkpoints")},
    **{("POST", f"api/runs/<run_id>/{tail}"): run_in_address
       for tail in ("metrics", "rollouts", "params", "heartbeat", "finish", "resume")},
}


def scope_allows(request: HttpRequest, token: ApiToken, routes: Mapping[Route, Check]) -> bool:
    """Whether the request, sent with the run's `token`, is one that `routes` allow for its run.
    A check may raise its family's error for a body it cannot read (the view would refuse it
    alike)."""
    match = request.resolver_match
    check = routes.get((request.method or "", match.route)) if match is not None else None
    return check is not None and check(request, match.kwargs, RunScope.of(token))


def scope_refusal_text(token: ApiToken) -> str:
    """Said for every request out of scope: the same for what exists and what does not."""
    return (f"Not found: this token is run {token.run_id}'s own, and reaches only that run's "
            "tracking (its metrics, parameters, tags, artifacts and logged models).")
