"""The API tokens page: a user's personal access tokens for the API, the SDK, the CLI and MLflow
clients. A new token appears once, in the response to the POST that creates it. It is kept
nowhere else (not in the session, not in a message): the database holds only its SHA-256, so a
reload, or anyone who reads the database later, cannot see it again.

Runs' own tokens (webapp.api.run_tokens) are not the user's: they are neither listed nor
revoked here; each lives and ends with its run."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from webapp.api import tokens
from webapp.api.forms import ApiTokenForm
from webapp.api.models import ApiToken


def _render(request: HttpRequest, form: ApiTokenForm, created: ApiToken | None = None,
            token: str = "", status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "created": created,
        "token": token,
        "tokens": request.user.api_tokens.filter(run__isnull=True),
        "api_root": request.build_absolute_uri(reverse("api:api-root")),
    }
    template = "api/tokens.html#tokens" if request.htmx else "api/tokens.html"
    return render(request, template, context, status=status)


@never_cache  # the response that creates a token holds it: no cache may keep a copy
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """GET lists the user's tokens; POST creates one and shows it, this once."""
    form = ApiTokenForm(request.POST or None)
    if request.method != "POST":
        return _render(request, form)
    if not form.is_valid():
        return _render(request, form, status=422)
    created, token = tokens.token_create(user=request.user, name=form.cleaned_data["name"])
    return _render(request, ApiTokenForm(), created=created, token=token)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Another user's token, or a run's, is 404, as if it did not exist."""
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user, run__isnull=True)
    tokens.token_revoke(token=token)
    if request.htmx:
        return _render(request, ApiTokenForm())
    return redirect("api_tokens:list")
