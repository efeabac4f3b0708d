"""A run's artifacts in the browser: the folder listing (the run page's Artifacts panel, and a
page of its own without JavaScript), a file's page with its preview, the file's download and,
for the image types pages show, the image itself.

Every URL names the run, and every file is looked up within it (webapp.artifacts.selectors), so
people outside the run's team get 404 and a file of another run is never reached. Downloads and
images stream from the artifact store a chunk at a time, with a type the browser must not
second-guess (nosniff) and a sandbox that keeps anything in them from running."""

from __future__ import annotations

import logging
from posixpath import basename

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from webapp.artifacts import selectors
from webapp.artifacts.models import Artifact
from webapp.artifacts.previews import (
    IMAGE_HEAD_BYTES,
    Table,
    TablePage,
    artifact_preview,
    artifact_table,
    image_type,
    shown_type,
    table_page,
)
from webapp.artifacts.reading import artifact_head
from webapp.artifacts.storage import file_chunks, file_open
from webapp.common.inputs import query_step
from webapp.runs.models import Run
from webapp.runs.selectors import get_run_for_user

logger = logging.getLogger(__name__)


def _swap(request: HttpRequest) -> bool:
    """Whether htmx asks for a part to swap in; a history restore asks for the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def listing_context(run: Run, *, model_id: str | None, path: str) -> dict:
    """What the listing of a folder shows: of the run's own files, or of the files of the
    logged model `model_id`; and the run's logged models."""
    model = selectors.get_logged_model_of_run(run, model_id) if model_id else None
    files = model.artifacts.all() if model else Artifact.objects.filter(run=run)
    return {"run": run, "model": model,
            "listing": selectors.folder_listing(files, selectors.normalized_folder(path)),
            "logged_models": selectors.logged_models_of_run(run)}


@login_required
@require_GET
def artifact_list(request: HttpRequest, run_id: int) -> HttpResponse:
    """A folder of the run's files (?path=, from the top by default), or of one of its logged
    models' (?model=); htmx gets the listing alone, to swap into the run page's panel."""
    run = get_run_for_user(request.user, run_id)
    context = listing_context(run, model_id=request.GET.get("model"),
                              path=request.GET.get("path", ""))
    if _swap(request):
        return render(request, "artifacts/artifact_list.html#listing", context)
    return render(request, "artifacts/artifact_list.html", {
        **context, "experiment": run.experiment, "project": run.experiment.project})


@login_required
@require_GET
def artifact_detail(request: HttpRequest, run_id: int, artifact_id: int) -> HttpResponse:
    """The file's page: its size, type and download, and its preview. A table's page of rows
    is ?page= (from 1), sorted by column ?sort= (from 0), ?order=desc for the highest first;
    htmx gets the table alone."""
    run = get_run_for_user(request.user, run_id)
    artifact = selectors.get_artifact_of_run(run, artifact_id)
    try:
        if _swap(request) and "page" in request.GET:
            table = artifact_table(artifact)
            if table is None:
                raise Http404("This file is not a table.")
            return render(request, "artifacts/artifact_detail.html#table", {
                "run": run, "artifact": artifact, "page": _table_page(request, artifact, table)})
        preview = artifact_preview(artifact)
    except FileNotFoundError:
        logger.error("run %s: artifact %s (%s) is missing from the artifact store", run.pk,
                     artifact.pk, artifact.storage_name)
        preview = None
    folder, _, name = artifact.path.rpartition("/")
    return render(request, "artifacts/artifact_detail.html", {
        "run": run, "experiment": run.experiment, "project": run.experiment.project,
        "artifact": artifact, "model": artifact.logged_model, "name": name,
        "crumbs": selectors.folder_crumbs(selectors.normalized_folder(folder)),
        "type": shown_type(artifact), "preview": preview,
        "page": (_table_page(request, artifact, preview.table)
                 if preview and preview.table else None)})


def _table_page(request: HttpRequest, artifact: Artifact, table: Table) -> TablePage:
    page = table_page(table, page=query_step(request.GET, "page") or 1,
                      sort=query_step(request.GET, "sort"),
                      descending=request.GET.get("order") == "desc")
    selectors.find_table_images(artifact, page)
    return page


@login_required
@require_GET
def artifact_download(request: HttpRequest, run_id: int, artifact_id: int) -> HttpResponse:
    """The file, as an attachment of no particular type, so that a browser never renders or
    runs it."""
    run = get_run_for_user(request.user, run_id)
    artifact = selectors.get_artifact_of_run(run, artifact_id)
    response = _stream(artifact, "application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(
        True, _header_safe(basename(artifact.path)))
    return response


@login_required
@require_GET
def artifact_image(request: HttpRequest, run_id: int, artifact_id: int) -> HttpResponse:
    """The file as an image, for the file's page to show: only a PNG, JPEG, GIF or WebP (told
    by its first bytes), sent as that type; 404 for anything else."""
    run = get_run_for_user(request.user, run_id)
    artifact = selectors.get_artifact_of_run(run, artifact_id)
    try:
        found = image_type(artifact_head(artifact, IMAGE_HEAD_BYTES))
    except FileNotFoundError:
        found = None
    if found is None:
        raise Http404("This file is not an image that pages show.")
    return _stream(artifact, found)


def _stream(artifact: Artifact, content_type: str) -> StreamingHttpResponse:
    try:
        stream = file_open(artifact.storage_name)
    except FileNotFoundError:
        logger.error("artifact %s (%s) is missing from the artifact store", artifact.pk,
                     artifact.storage_name)
        raise Http404("This file is missing from the artifact store.") from None
    response = StreamingHttpResponse(file_chunks(stream), content_type=content_type)
    response["Content-Length"] = str(artifact.size)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-cache"
    return response


def _header_safe(name: str) -> str:
    """A file name fit for a header: control characters (a newline would end the header)
    replaced by "_".

    >>> _header_safe("a\\nb\\x7f.txt")
    'a_b_.txt'
    """
    return "".join(char if char.isprintable() else "_" for char in name) or "file"
