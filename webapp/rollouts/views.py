"""The rollout browser and the prompt history: GET forms, so every filtered view is a URL; htmx
requests get the results partial, everything else the whole page."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from webapp.common.inputs import BIGINT_MAX, query_step
from webapp.rollouts.prompt_history import prompt_history, sparkline
from webapp.rollouts.rollout_browser import BadCursor, RolloutFilters, RolloutOrder, rollout_page
from webapp.runs.selectors import get_run_for_user

YES_NO = {"yes": True, "no": False}


class PromptIdConverter:
    """Any non-empty text, slashes and newlines included: prompt ids come from datasets ("#12"),
    tasks ("3+4") and outside scripts. reverse() percent-encodes what a path cannot hold."""

    regex = r"(?s:.+)"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class RolloutFilterForm(forms.Form):
    """The browser's filters and order, read from GET parameters; every field may be empty."""

    step_min = forms.IntegerField(label="Steps from", required=False, min_value=0,
                                  max_value=BIGINT_MAX)
    step_max = forms.IntegerField(label="to", required=False, min_value=0, max_value=BIGINT_MAX)
    reward_min = forms.FloatField(label="Reward from", required=False)
    reward_max = forms.FloatField(label="to", required=False)
    degenerate = forms.ChoiceField(
        label="Groups", required=False,
        choices=[("", "all groups"), ("yes", "degenerate (all rewards equal)"),
                 ("no", "mixed rewards")])
    truncated = forms.ChoiceField(
        label="Truncated", required=False,
        choices=[("", "either"), ("yes", "truncated"), ("no", "not truncated")])
    q = forms.CharField(label="Text in prompt or completion", required=False, max_length=200)
    sort = forms.ChoiceField(
        label="Sort", required=False,
        choices=[("-step", "newest step first"), ("step", "oldest step first"),
                 ("-reward", "highest reward"), ("reward", "lowest reward"),
                 ("-advantage", "highest advantage"), ("advantage", "lowest advantage"),
                 ("-length", "longest"), ("length", "shortest")])

    def clean(self):
        data = super().clean()
        for low, high, what in (("step_min", "step_max", "step"),
                                ("reward_min", "reward_max", "reward")):
            if (data.get(low) is not None and data.get(high) is not None
                    and data[low] > data[high]):
                self.add_error(high, f"The last {what} must not be below the first.")
        return data

    def filters(self) -> RolloutFilters:
        data = self.cleaned_data
        return RolloutFilters(
            step_min=data["step_min"], step_max=data["step_max"],
            reward_min=data["reward_min"], reward_max=data["reward_max"],
            degenerate=YES_NO.get(data["degenerate"]), truncated=YES_NO.get(data["truncated"]),
            text=data["q"])

    def order(self) -> RolloutOrder:
        """"-reward": highest reward first; "reward": lowest first; newest step by default."""
        sort = self.cleaned_data["sort"] or "-step"
        return RolloutOrder(key=sort.lstrip("-"), descending=sort.startswith("-"))

    # The range fields' labels read "Steps from … to …" on the form; a message names them whole.
    ERROR_NAMES = {"step_max": "Steps to", "reward_max": "Reward to"}

    def error_lines(self) -> list[str]:
        """'Field: message' for each problem, for the results area, which htmx replaces
        without the form."""
        return [f"{self.ERROR_NAMES.get(name, self.fields[name].label)}: {message}"
                if name in self.fields else message
                for name, messages in self.errors.items() for message in messages]


def _page_query(params: QueryDict, **cursor: str) -> str:
    """The current query string with another page cursor."""
    query = params.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    query.update(cursor)
    return query.urlencode()


def _render(request: HttpRequest, template: str, partial: str, context: dict,
            status: int = 200) -> HttpResponse:
    """The partial for htmx swaps, the whole page otherwise (a history restore included); both
    are cached apart, so Back never shows a bare fragment."""
    if request.htmx and not request.htmx.history_restore_request:
        template = f"{template}#{partial}"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def rollout_browser(request: HttpRequest, run_id: int) -> HttpResponse:
    """A run's rollouts by group, filtered and sorted, ten groups a page."""
    run = get_run_for_user(request.user, run_id)
    form = RolloutFilterForm(request.GET)
    page, errors = None, []
    if form.is_valid():
        try:
            page = rollout_page(run, form.filters(), form.order(),
                                after=request.GET.get("after", ""),
                                before=request.GET.get("before", ""))
        except BadCursor:
            errors = ["This page link is damaged or out of date: start again from the first "
                      "page."]
    else:
        errors = form.error_lines()
    context = {
        "run": run, "experiment": run.experiment, "project": run.experiment.project,
        "form": form, "page": page, "errors": errors,
        "next_query": _page_query(request.GET, after=page.next_cursor)
        if page and page.next_cursor else "",
        "prev_query": _page_query(request.GET, before=page.prev_cursor)
        if page and page.prev_cursor else "",
    }
    return _render(request, "rollouts/rollout_browser.html", "results", context,
                   status=200 if page is not None else 422)


@login_required
@require_GET
def prompt_history_view(request: HttpRequest, run_id: int, prompt_id: str) -> HttpResponse:
    """One prompt's completions and rewards at every step where it was sampled, oldest first,
    twenty steps a page, and its mean reward per step over the whole run."""
    run = get_run_for_user(request.user, run_id)
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    history = prompt_history(run, prompt_id, after=query_step(request.GET, "after"),
                             before=query_step(request.GET, "before"), with_means=not partial)
    if history is None:
        raise Http404("This run never sampled that prompt.")
    context = {
        "run": run, "experiment": run.experiment, "project": run.experiment.project,
        "history": history, "chart": sparkline(history.mean_rewards),
        "next_query": _page_query(request.GET, after=str(history.next_step))
        if history.next_step is not None else "",
        "prev_query": _page_query(request.GET, before=str(history.prev_step))
        if history.prev_step is not None else "",
    }
    return _render(request, "rollouts/prompt_history.html", "steps", context)
