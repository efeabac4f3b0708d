"""The runs table of a project (/projects/<id>/runs/): the page a team lives on. A GET form
holds its filters, search, order, grouping and page, so every view of it is a link; htmx swaps
the table in place where it runs. The column picker and the actions on ticked runs are POST
forms that go back to the same view of the table."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.projects.selectors import get_project_for_user
from webapp.runs.compare import MAX_COMPARED
from webapp.runs_table import selectors, services
from webapp.runs_table.forms import ActionForm, ColumnPickerForm, TableForm
from webapp.runs_table.paging import CursorError
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role

# The fixed columns, as their headers read; each sorts by its own name (columns.FIXED_SORTS).
FIXED_HEADERS = [("name", "Run"), ("experiment", "Experiment"), ("status", "Status"),
                 ("author", "Author"), (None, "Tags"), ("created", "Created"),
                 ("duration", "Duration")]

# The filter form's fields below the search box, in this order.
FILTER_FIELDS = ("tag", "author", "experiment", "sweep", "config_key", "config_value",
                 "metric_key", "metric_min", "metric_max", "starred", "group", "group_settings")


def _query(params: QueryDict, **changes) -> str:
    """`params` with `changes` (None removes a parameter), as a query string; a page cursor is
    dropped whenever anything else changes, since it belongs to one order and filter."""
    query = params.copy()
    for name in ("after", "expand") if "after" not in changes else ():
        query.pop(name, None)
    for name, value in changes.items():
        query.pop(name, None)
        if value is not None:
            query[name] = value
    return query.urlencode()


@login_required
@require_GET
def runs_table(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, project_id)
    columns = selectors.columns_for(request.user, project)
    form = TableForm(request.GET, project=project)
    context = {
        "project": project, "form": form, "columns": columns,
        "filter_fields": [form[name] for name in FILTER_FIELDS],
        "can_edit": user_has_role(request.user, project.team_id, Role.MEMBER),
        "fixed_headers": FIXED_HEADERS, "max_compared": MAX_COMPARED,
        "team_tags": selectors.tag_names(project),
        "members": selectors.member_names(project),
        "rows": [], "page": None, "grouped": None, "search_how": "", "problem": "",
        "here": request.GET.urlencode(),
    }
    if not form.is_valid():
        context["problem"] = _problems(form)
        return _render(request, context, 422)
    searched = selectors.filtered_runs(project, request.user, form.filters())
    context["search_how"] = searched.how
    if searched.error:
        context["problem"] = searched.error
        return _render(request, context, 422)
    sort = form.sort_spec
    context["sort"] = sort
    context["headers"] = _headers(request.GET, sort, columns)
    group_by = form.cleaned_data["group"]
    if group_by:
        settings = form.cleaned_data["group_settings_list"]
        grouped = selectors.grouped(searched.runs, columns, by=group_by, config_keys=settings,
                                    project=project)
        context["grouped"] = grouped
        context["group_rows"] = _group_rows(request, searched.runs, grouped, columns, sort,
                                            group_by, settings, form.cleaned_data["expand"])
        return _render(request, context, 200)
    try:
        page = selectors.runs_page(searched.runs, sort, form.cleaned_data["after"] or None)
    except CursorError as exc:
        context["problem"] = str(exc)
        return _render(request, context, 400)
    context["page"] = page
    context["total"] = searched.runs.count()
    context["rows"] = selectors.page_rows(page.rows, columns, request.user)
    context["next_query"] = _query(request.GET, after=page.next_cursor) if page.next_cursor \
        else None
    context["previous_query"] = _query(request.GET, after=page.previous_cursor) \
        if page.previous_cursor else None
    context["first_query"] = None if page.is_first else _query(request.GET, after=None)
    return _render(request, context, 200)


def _problems(form: TableForm) -> str:
    """Every error of the filter form in one line, each after its field's name: some fields
    (the order, the page) have no place of their own on the page."""
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = (field.label if field and field.label else name.replace("_", " ")) \
            if name != "__all__" else "filters"
        parts.append(f"{label}: {' '.join(errors)}")
    return "Some filters cannot be read. " + "; ".join(parts)


def _render(request: HttpRequest, context: dict, status: int) -> HttpResponse:
    template = "runs_table/runs_table.html"
    if request.htmx and request.htmx.target == "runs-table-result":
        template += "#result"
    return render(request, template, context, status=status)


def _headers(params: QueryDict, sort, columns) -> list[dict]:
    """Each header's label and the link that sorts by it: descending first, the other way when
    it is the current order."""

    def header(sort_id: str | None, label: str) -> dict:
        if sort_id is None:
            return {"label": label, "query": None, "current": ""}
        current = "" if sort.id != sort_id else ("asc" if sort.ascending else "desc")
        order = "asc" if current == "desc" else "desc"
        return {"label": label, "current": current,
                "query": _query(params, sort=sort_id, order=order)}

    return ([header(sort_id, label) for sort_id, label in FIXED_HEADERS]
            + [header(column.id, column.label) for column in columns])


def _group_rows(request: HttpRequest, runs, grouped, columns, sort, by: str,
                settings: list[str], expand: str) -> list[dict]:
    """The group rows, each with its expand link, and the runs of the one group expanded."""
    opened_key = _json_or_nothing(expand)
    rows = []
    for group in grouped.groups:
        opened = opened_key is not _NOTHING and opened_key == group.key
        item = {"group": group, "open": opened,
                "query": _query(request.GET, expand=None if opened else group.key_text)}
        if opened:
            members = selectors.group_runs(runs, by=by, config_keys=settings, key=group.key)
            page = selectors.runs_page(members, sort, None, size=selectors.GROUP_RUNS_SHOWN)
            item["rows"] = selectors.page_rows(page.rows, columns, request.user)
            item["more"] = page.next_cursor is not None
        rows.append(item)
    return rows


_NOTHING = object()


def _json_or_nothing(text: str) -> Any:
    """The group key an expand parameter names, or _NOTHING (none, or not JSON)."""
    if not text:
        return _NOTHING
    try:
        return json.loads(text)
    except ValueError:
        return _NOTHING


@login_required
@require_http_methods(["GET", "POST"])
def column_picker(request: HttpRequest, project_id: int) -> HttpResponse:
    """The user's columns of the project's table: keep (ticked), add one (a setting, or a
    metric as last, lowest, highest or mean of the last k), offered from the project's runs."""
    project = get_project_for_user(request.user, project_id)
    current = selectors.columns_for(request.user, project)
    form = ColumnPickerForm(request.POST or None, current=current)
    back = request.POST.get("back") or request.GET.get("back") or ""
    if request.method == "POST" and form.is_valid():
        services.column_set_save(user=request.user, project=project,
                                 columns=form.cleaned_data["picked"])
        messages.success(request, "Columns saved.")
        return redirect(_table_url(project.pk, back))
    offered = selectors.offered_columns(project)
    return render(request, "runs_table/columns.html", {
        "project": project, "form": form, "offered": offered, "back": back[:4000],
        "table_url": _table_url(project.pk, back)}, status=422 if form.errors else 200)


def _table_url(project_id: int, back: str) -> str:
    """The table with the query string it was shown with (only a query string: never a
    redirect elsewhere)."""
    url = reverse("runs_table:table", args=[project_id])
    query = QueryDict(back[:4000])
    return f"{url}?{urlencode(list(query.lists()), doseq=True)}" if query else url


@login_required
@require_POST
def runs_act(request: HttpRequest, project_id: int) -> HttpResponse:
    """Compare, tag or cancel the ticked runs. Comparing is reading (any member of the team);
    tagging and cancelling need a member (a viewer gets 403)."""
    project = get_project_for_user(request.user, project_id)
    form = ActionForm(request.POST)
    back = request.POST.get("back", "")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(_table_url(project.pk, back))
    action, run_ids = form.cleaned_data["action"], form.cleaned_data["runs"]
    if action == "compare":
        if len(run_ids) > MAX_COMPARED:
            messages.info(request, f"The comparison shows {MAX_COMPARED} runs at most: the "
                                   f"first {MAX_COMPARED} ticked.")
        query = urlencode([("runs", pk) for pk in run_ids[:MAX_COMPARED]])
        return redirect(f"{reverse('runs:compare', args=[project.pk])}?{query}")
    get_project_for_user(request.user, project_id, Role.MEMBER)
    if action == "tag":
        try:
            count = services.runs_tag_add(project=project, actor=request.user, run_ids=run_ids,
                                          name=form.cleaned_data["tag_name"])
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Tagged {count} run{'s' if count != 1 else ''}.")
    else:
        report = services.runs_cancel(project=project, user=request.user, run_ids=run_ids)
        text = f"Cancelled {len(report.cancelled)} run{'s' if len(report.cancelled) != 1 else ''}."
        if report.already_ended:
            names = ", ".join(str(run) for run in report.already_ended[:10])
            text += f" {len(report.already_ended)} had already ended: {names}"
            text += "…" if len(report.already_ended) > 10 else "."
        messages.success(request, text)
    return redirect(_table_url(project.pk, back))
