"""Reads of a run's artifacts for its pages: one file (always looked up within the run the user
may see), the run's logged models, and a folder's listing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet, Sum
from django.http import Http404

from webapp.artifacts.models import Artifact, LoggedModel
from webapp.artifacts.previews import TablePage
from webapp.runs.models import Run


def _owned_by_run(run: Run) -> Q:
    """The run's own files, and those of the models it logged in its own project."""
    return Q(run=run) | Q(logged_model__source_run=run,
                          logged_model__experiment__project_id=run.experiment.project_id)


def get_artifact_of_run(run: Run, artifact_id: int) -> Artifact:
    """The artifact `artifact_id` of the run (or of a model it logged); 404 for any other, so
    that a run the user may see opens no file of another run or project."""
    artifact = (Artifact.objects.filter(_owned_by_run(run), pk=artifact_id)
                .select_related("logged_model").first())
    if artifact is None:
        raise Http404
    return artifact


def find_table_images(table: Artifact, page: TablePage) -> None:
    """Sets the image_id of each image cell on the page whose image is a file of the table's
    own run or logged model (log_table saves them beside it, under table_images/)."""
    cells = [cell for row in page.rows for cell in row if cell.image_path]
    if not cells:
        return
    ids = dict(Artifact.objects.filter(
        run_id=table.run_id, logged_model_id=table.logged_model_id,
        path__in={cell.image_path for cell in cells}).values_list("path", "id"))
    for cell in cells:
        cell.image_id = ids.get(cell.image_path)


def logged_models_of_run(run: Run) -> list[LoggedModel]:
    """The models the run logged, newest first, with their number of files and bytes."""
    return list(LoggedModel.objects.filter(
        source_run=run, experiment__project_id=run.experiment.project_id)
        .annotate(file_count=Count("artifacts"), total_size=Sum("artifacts__size")))


def get_logged_model_of_run(run: Run, model_id: str) -> LoggedModel:
    """The model `model_id` that the run logged; 404 for any other."""
    model = LoggedModel.objects.filter(
        source_run=run, experiment__project_id=run.experiment.project_id, pk=model_id).first()
    if model is None:
        raise Http404
    return model


@dataclass
class Folder:
    """A subfolder in a listing: its name, its path (ending in "/"), and the number, bytes and
    latest time of the files anywhere under it."""

    name: str
    path: str
    files: int
    size: int
    updated: datetime


@dataclass
class Listing:
    """A folder of a run's (or a logged model's) files: the folders above it, from the top, as
    (name, path); its subfolders; its files."""

    path: str
    crumbs: list[tuple[str, str]]
    folders: list[Folder]
    files: list[Artifact]

    @property
    def empty(self) -> bool:
        return not self.folders and not self.files


def normalized_folder(path: str) -> str:
    """A folder path as listings use it: no leading slash, one trailing slash, "" for the top.

    >>> normalized_folder("/checkpoints//step-10"), normalized_folder("")
    ('checkpoints/step-10/', '')
    """
    parts = [part for part in path.split("/") if part]
    return "/".join(parts) + "/" if parts else ""


def folder_crumbs(folder: str) -> list[tuple[str, str]]:
    """The folders down to `folder` (as normalized_folder gives it), from the top, as (name,
    path).

    >>> folder_crumbs("a/b/")
    [('a', 'a/'), ('b', 'a/b/')]
    """
    crumbs, above = [], ""
    for part in folder.split("/")[:-1]:
        above += part + "/"
        crumbs.append((part, above))
    return crumbs


def folder_listing(files: QuerySet[Artifact], folder: str) -> Listing:
    """The listing of `folder` (as normalized_folder gives it) among `files`: the files right
    in it, and a Folder for each subfolder, folders and files by name."""
    inside = files.filter(path__startswith=folder) if folder else files
    folders: dict[str, Folder] = {}
    here = []
    for artifact in inside.order_by("path").only("id", "path", "size", "created_at", "run_id",
                                                 "logged_model_id", "content_type"):
        rest = artifact.path[len(folder):]
        name, slash, _ = rest.partition("/")
        if not slash:
            here.append(artifact)
            continue
        entry = folders.get(name)
        if entry is None:
            folders[name] = Folder(name=name, path=folder + name + "/", files=1,
                                   size=artifact.size, updated=artifact.created_at)
        else:
            entry.files += 1
            entry.size += artifact.size
            entry.updated = max(entry.updated, artifact.created_at)
    return Listing(path=folder, crumbs=folder_crumbs(folder), folders=list(folders.values()),
                   files=here)
