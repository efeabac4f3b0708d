"""Dataset pages. An upload takes two steps: the file is parsed and staged (step 1), then its
columns are mapped and the dataset saved (step 2). Between them the staged file is named by a
random token that only the uploader's session knows; nothing the client sends names a path."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from webapp.datasets import mapping
from webapp.datasets.forms import MappingForm, UploadForm
from webapp.datasets.models import DatasetFormat
from webapp.datasets.parsing import DatasetError
from webapp.datasets.selectors import (
    dataset_experiments,
    dataset_preview,
    datasets_for_project,
    get_dataset_for_user,
    staged_preview,
    staged_upload,
)
from webapp.datasets.services import dataset_create, dataset_upload_discard, dataset_upload_stage
from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role

logger = logging.getLogger(__name__)

PENDING = "datasets_pending"  # session key: token -> what step 2 needs to know of the upload
MAX_PENDING = 5  # per session; starting a sixth upload drops the oldest one
PREVIEW_ROWS = 10


@login_required
def dataset_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, project_id)
    return render(request, "datasets/dataset_list.html", {
        "project": project, "datasets": datasets_for_project(project),
        "can_upload": _can_upload(request, project)})


@csrf_exempt  # checked by the inner view, once the size limit below is in place
@login_required
@require_http_methods(["GET", "POST"])
def dataset_upload(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    # Installed before anything reads the body, so that an oversized file is dropped at the
    # limit instead of being spooled to disk whole.
    limit = _SizeLimit(request, settings.RLAB_DATASET_MAX_BYTES)
    request.upload_handlers.insert(0, limit)
    return _dataset_upload(request, project, limit)


@csrf_protect
def _dataset_upload(request: HttpRequest, project: Project, limit: _SizeLimit) -> HttpResponse:
    form = UploadForm(project=project)
    if request.method == "POST":
        data, files = request.POST, request.FILES  # reading the body runs the upload handlers
        form = UploadForm(data, files, project=project, too_large=limit.exceeded)
    if form.is_bound and form.is_valid():
        upload = form.cleaned_data["file"]
        filename = _safe_filename(upload.name)
        kind = form.cleaned_data["kind"]
        try:
            # Read from where the upload handler put it (a temporary file, past a few MB).
            staged = dataset_upload_stage(file=upload.file, filename=filename, kind=kind)
        except DatasetError as exc:
            form.add_error("file", exc.messages)
        else:
            _remember(request, staged.token, {
                "project": project.pk, "name": form.cleaned_data["name"], "kind": kind,
                "filename": filename, "format": staged.summary.format, "size": upload.size,
                "columns": list(staged.summary.columns),
                "row_count": staged.summary.row_count})
            return redirect("datasets:confirm", project.pk, staged.token)
    return render(request, "datasets/dataset_upload.html", {"project": project, "form": form},
                  status=422 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_confirm(request: HttpRequest, project_id: int, upload_token: str) -> HttpResponse:
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    pending = request.session.get(PENDING, {}).get(upload_token)
    mine = bool(pending) and pending["project"] == project.pk
    staged = staged_upload(upload_token) if mine else None
    if staged is None:
        if mine:
            _forget(request, upload_token)
        messages.info(request, "That upload is no longer waiting: it was saved, discarded or "
                               "has expired. Upload the file again.")
        return redirect("datasets:upload", project.pk)
    with staged:
        return _dataset_confirm(request, project, upload_token, pending, staged)


def _dataset_confirm(request: HttpRequest, project: Project, upload_token: str,
                     pending: dict[str, Any], staged: BinaryIO) -> HttpResponse:
    if request.method == "POST" and "discard" in request.POST:
        dataset_upload_discard(token=upload_token)
        _forget(request, upload_token)
        messages.info(request, "Upload discarded; nothing was saved.")
        return redirect("datasets:list", project.pk)

    kind, columns = pending["kind"], tuple(pending["columns"])
    initial = {"name": pending["name"], **mapping.guess_mapping(columns, kind)}
    form = MappingForm(request.POST if request.method == "POST" else None, project=project,
                       kind=kind, columns=columns, initial=initial)
    if form.is_bound and form.is_valid():
        try:
            dataset = dataset_create(project=project, user=request.user,
                                     name=form.cleaned_data["name"], kind=kind,
                                     filename=pending["filename"], file=staged,
                                     mapping=form.mapping)
        except DatasetError as exc:
            form.add_error(None, exc.messages)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            dataset_upload_discard(token=upload_token)
            _forget(request, upload_token)
            messages.success(request, f"Saved {dataset.name}: {dataset.row_count} rows.")
            return redirect(dataset)

    try:
        preview = staged_preview(staged, filename=pending["filename"], columns=columns,
                                 rows=PREVIEW_ROWS, kind=kind)
    except DatasetError as exc:  # it parsed at upload; the limits may have changed since
        dataset_upload_discard(token=upload_token)
        _forget(request, upload_token)
        messages.error(request, " ".join(exc.messages))
        return redirect("datasets:upload", project.pk)
    return render(request, "datasets/dataset_confirm.html", {
        "project": project, "form": form, "pending": pending, "columns": columns,
        "format": DatasetFormat(pending["format"]).label, "preview": preview},
        status=422 if form.errors else 200)


@login_required
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for_user(request.user, dataset_id)
    preview = dataset_preview(dataset, limit=PREVIEW_ROWS)
    rows = None if preview is None else [[row.get(role) for role in dataset.roles]
                                         for row in preview]
    return render(request, "datasets/dataset_detail.html", {
        "dataset": dataset, "project": dataset.project, "preview": rows,
        "mapping": [(role, dataset.column_mapping.get(role, "")) for role in dataset.roles],
        "experiments": dataset_experiments(dataset),
        "can_delete": user_has_role(request.user, dataset.project.team_id, Role.ADMIN)})


@login_required
@require_GET
def dataset_download(request: HttpRequest, dataset_id: int) -> FileResponse:
    """The uploaded file (or, with ?file=normalized, the normalised JSON lines), always as an
    attachment of no particular type, so that a browser never renders or runs it."""
    dataset = get_dataset_for_user(request.user, dataset_id)
    if request.GET.get("file") == "normalized":
        path = dataset.normalized_path
        filename = f"{PurePosixPath(dataset.original_filename).stem or 'dataset'}.normalized.jsonl"
    else:
        path, filename = dataset.original_path, dataset.original_filename
    try:
        file = path.open("rb")
    except FileNotFoundError:
        logger.error("dataset %s: file %s is missing from the store", dataset.pk, path)
        raise Http404("The file of this dataset is missing from the dataset store.") from None
    response = FileResponse(file, as_attachment=True, filename=filename,
                            content_type="application/octet-stream")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


class _SizeLimit(FileUploadHandler):
    """Skips an uploaded file once it passes `limit` bytes and notes that it did."""

    def __init__(self, request: HttpRequest, limit: int):
        super().__init__(request)
        self.limit = limit
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) makes the file


def _can_upload(request: HttpRequest, project: Project) -> bool:
    return user_has_role(request.user, project.team_id, Role.MEMBER)


def _safe_filename(name: str | None) -> str:
    """The base name only, printable, at most 255 characters (Django already drops folders)."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = base.encode("utf-8", "ignore").decode("utf-8")  # drops unpaired surrogates
    cleaned = "".join(ch for ch in base if ch.isprintable())[-255:]
    return cleaned or "dataset"


def _remember(request: HttpRequest, token: str, upload: dict[str, Any]) -> None:
    pending = dict(request.session.get(PENDING, {}))
    pending[token] = upload
    while len(pending) > MAX_PENDING:
        oldest = next(iter(pending))
        dataset_upload_discard(token=oldest)
        del pending[oldest]
    request.session[PENDING] = pending


def _forget(request: HttpRequest, token: str) -> None:
    pending = dict(request.session.get(PENDING, {}))
    pending.pop(token, None)
    request.session[PENDING] = pending

