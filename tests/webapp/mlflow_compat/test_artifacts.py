"""Artifacts through the real mlflow client over HTTP: every way a script logs files comes back
byte for byte from list_artifacts and download_artifacts; the limits, bad paths and the team's
roles are told in MLflow's words, with nothing stored and nothing lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from tests.stack import start_web
from webapp.api.tokens import token_create
from webapp.artifacts.models import Artifact
from webapp.runs.models import Run
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

# The web server's limits in this module: a few-MB file fits, two of them pass the run's.
MAX_FILE = 6 * 1024 * 1024
MAX_RUN = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    server, base_url = start_web(tmp_path_factory.mktemp("web"),
                                 RLAB_ARTIFACT_MAX_FILE_BYTES=str(MAX_FILE),
                                 RLAB_ARTIFACT_MAX_RUN_BYTES=str(MAX_RUN))
    yield base_url
    server.stop()


def files_under(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_every_kind_of_logged_file_comes_back_byte_for_byte(tracking, tmp_path):
    import mlflow
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 16 + b"\x00\r\n\x1a")
    big = tmp_path / "big.npy"
    big.write_bytes(np.random.default_rng(0).bytes(4 * 1024 * 1024 + 3))
    folder = tmp_path / "outputs"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.txt").write_text("first\n")
    (folder / "nested" / "ü b.json").write_text('{"x": 1}')
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])

    with mlflow.start_run() as run:
        mlflow.log_artifact(str(binary))
        mlflow.log_artifact(str(big), artifact_path="data")
        mlflow.log_artifacts(str(folder), artifact_path="outputs")
        mlflow.log_dict({"lr": 1e-6, "tags": ["spo"]}, "config.json")
        mlflow.log_dict({"lr": 1e-6}, "config.yaml")
        mlflow.log_text("héllo\n", "notes/readme.md")
        mlflow.log_table(pd.DataFrame({"prompt": ["1+1"], "reward": [1.0]}), "eval/table.json")
        mlflow.log_table(pd.DataFrame({"prompt": ["2+2"], "reward": [0.0]}), "eval/table.json")
        mlflow.log_image(image, "images/sample.png")
        mlflow.log_figure(figure, "plots/curve.png")
    run_id = run.info.run_id

    client = mlflow.MlflowClient()
    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {("weights.bin", False), ("data", True), ("outputs", True),
                   ("config.json", False), ("config.yaml", False), ("notes", True),
                   ("eval", True), ("images", True), ("plots", True)}
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "data")] == [
        ("data/big.npy", big.stat().st_size)]
    assert [f.path for f in client.list_artifacts(run_id, "outputs/nested")] == [
        "outputs/nested/ü b.json"]

    local = Path(client.download_artifacts(run_id, "", dst_path=str(tmp_path / "back")))
    got = files_under(local)
    assert got["weights.bin"] == binary.read_bytes()
    assert got["data/big.npy"] == big.read_bytes()
    assert got["outputs/a.txt"] == b"first\n"
    assert got["outputs/nested/ü b.json"] == b'{"x": 1}'
    assert json.loads(got["config.json"]) == {"lr": 1e-6, "tags": ["spo"]}
    assert got["notes/readme.md"] == "héllo\n".encode()
    # log_table appended to the table it downloaded first
    table = json.loads(got["eval/table.json"])
    assert table["data"] == [["1+1", 1.0], ["2+2", 0.0]]
    assert got["images/sample.png"].startswith(b"\x89PNG")
    assert got["plots/curve.png"].startswith(b"\x89PNG")
    stored = {a.path: a for a in Artifact.objects.filter(run_id=int(run_id))}
    assert set(stored) == set(got)
    assert stored["weights.bin"].size == binary.stat().st_size
    assert stored["images/sample.png"].content_type == "image/png"


def test_loading_back_a_logged_image_and_a_single_file(tracking, tmp_path):
    import mlflow
    import numpy as np

    with mlflow.start_run() as run:
        mlflow.log_text("just one", "one.txt")
        mlflow.log_image(np.zeros((2, 2, 3), dtype=np.uint8), "pic.png")

    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="one.txt",
                                               dst_path=str(tmp_path))
    assert Path(path).read_text() == "just one"
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/one.txt") == "just one"
    assert mlflow.artifacts.load_image(f"runs:/{run.info.run_id}/pic.png").size == (2, 2)


def test_images_logged_by_key_and_step_are_stored(tracking):
    """MLflow 3's image series: files named for the key, step and time, and a tag."""
    import mlflow
    import numpy as np

    with mlflow.start_run() as run:
        for step in (1, 2):
            mlflow.log_image(np.full((3, 3, 3), step, dtype=np.uint8), key="samples/grid",
                             step=step)

    names = [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "images")]
    assert len(names) == 4  # a PNG and a compressed WebP per step
    assert all(name.startswith("images/samples~grid+step+") for name in names)


def test_logging_a_path_again_replaces_it(tracking, tmp_path):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_text("old", "notes.txt")
        mlflow.log_text("newer text", "notes.txt")

    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "newer text"
    assert Artifact.objects.get(run_id=int(run.info.run_id)).size == len("newer text")


def test_a_file_over_the_limit_is_refused_and_the_old_one_kept(tracking, tmp_path):
    import mlflow
    from requests.exceptions import HTTPError

    big = tmp_path / "big.bin"
    with mlflow.start_run() as run:
        mlflow.log_text("small", "big.bin")
        big.write_bytes(b"x" * (MAX_FILE + 1))
        with pytest.raises((HTTPError, mlflow.exceptions.MlflowException)) as raised:
            mlflow.log_artifact(str(big))

    assert "RLAB_ARTIFACT_MAX_FILE_BYTES" in str(raised.value)
    assert "400" in str(raised.value)
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/big.bin") == "small"


def test_a_run_past_its_limit_is_refused(tracking, tmp_path):
    import mlflow
    from requests.exceptions import HTTPError

    part = tmp_path / "part.bin"
    part.write_bytes(os.urandom(MAX_RUN // 2 + 1))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(part), "one")
        with pytest.raises((HTTPError, mlflow.exceptions.MlflowException)) as raised:
            mlflow.log_artifact(str(part), "two")

    assert "RLAB_ARTIFACT_MAX_RUN_BYTES" in str(raised.value)
    assert [a.path for a in Artifact.objects.filter(run_id=int(run.info.run_id))] == [
        "one/part.bin"]


def test_an_upload_far_past_the_limit_is_told_so(tracking, project, user, token, web):
    """The web server reads no more than the limit of it: the rest is discarded unread by
    Django, and the client still gets the refusal, not a reset connection."""
    run = tracked_run_create(experiment=tracked_experiment_get_or_create(
        project=project, user=user, name="huge"), user=user, name="", tags={})

    response = requests.put(artifact_url(web, project, run, "huge.bin"),
                            data=b"h" * (4 * MAX_FILE), headers=auth(token))

    assert response.status_code == 400
    assert "RLAB_ARTIFACT_MAX_FILE_BYTES" in response.json()["message"]
    assert not Artifact.objects.filter(run=run).exists()


def test_a_chunked_upload_is_stopped_at_the_limit(tracking, project, user, token, web):
    """A body without Content-Length is counted as it is read."""
    run = tracked_run_create(experiment=tracked_experiment_get_or_create(
        project=project, user=user, name="chunked"), user=user, name="", tags={})
    url = artifact_url(web, project, run, "stream.bin")

    def body():
        for _ in range(MAX_FILE // 65536 + 2):
            yield b"y" * 65536

    response = requests.put(url, data=body(), headers=auth(token))
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not Artifact.objects.filter(run=run).exists()


def artifact_url(web: str, project, run: Run, path: str) -> str:
    return (f"{web}/mlflow/{project.pk}/api/2.0/mlflow-artifacts/artifacts/"
            f"{run.experiment_id}/{run.pk}/artifacts/{path}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", [
    "%2e%2e/escape.txt", "a/%2e%2e/%2e%2e/escape.txt", "a/%2E/b.txt", "a//b.txt", "a/",
    "a%5cb.txt", "nul%00.txt", "ctrl%07.txt", "x" * 256 + ".txt", "a/" * 600 + "b",
])
def test_a_bad_path_is_refused(path, tracking, project, user, token, web):
    run = tracked_run_create(experiment=tracked_experiment_get_or_create(
        project=project, user=user, name="paths"), user=user, name="", tags={})

    response = requests.put(artifact_url(web, project, run, path), data=b"data",
                            headers=auth(token))

    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not Artifact.objects.exists()
    assert not any(Path(os.environ["RLAB_ARTIFACT_DIR"]).rglob("escape.txt"))
    assert not any(Path(os.environ["RLAB_ARTIFACT_DIR"]).parent.glob("escape.txt"))


def test_reads_of_folders_missing_files_and_bad_paths_say_what_is_wrong(tracking, project,
                                                                        token, web):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_text("x", "folder/file.txt")
    run = Run.objects.get(pk=int(run.info.run_id))
    listing = f"{web}/mlflow/{project.pk}/api/2.0/mlflow-artifacts/artifacts"
    root = f"{run.experiment_id}/{run.pk}/artifacts"

    def get(url: str, **params) -> tuple[int, str]:
        response = requests.get(url, params=params, headers=auth(token))
        return response.status_code, response.json().get("error_code", "")

    assert get(artifact_url(web, project, run, "folder")) == (400, "INVALID_PARAMETER_VALUE")
    assert get(artifact_url(web, project, run, "nothing.txt")) == (404,
                                                                   "RESOURCE_DOES_NOT_EXIST")
    assert get(listing, path=f"{root}/../../etc") == (400, "INVALID_PARAMETER_VALUE")
    assert get(listing, path="0/../../etc") == (400, "INVALID_PARAMETER_VALUE")
    assert get(listing, path=f"{root}/folder/file.txt") == (200, "")  # a file lists nothing


def test_a_file_and_a_folder_cannot_share_a_path(tracking):
    import mlflow
    from requests.exceptions import HTTPError

    with mlflow.start_run() as run:
        mlflow.log_text("file", "a/b")
        with pytest.raises(HTTPError):
            mlflow.log_text("under a file", "a/b/c.txt")
        with pytest.raises(HTTPError):
            mlflow.log_text("over a folder", "a")

    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/a/b") == "file"


def test_a_viewer_reads_artifacts_but_cannot_write_them(tracking, member_of, tmp_path):
    import mlflow
    from requests.exceptions import HTTPError

    with mlflow.start_run() as run:
        mlflow.log_text("seen", "seen.txt")
    tracking(token=token_create(user=member_of("viewer"), name="mlflow")[1])
    client = mlflow.MlflowClient()

    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["seen.txt"]
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/seen.txt") == "seen"
    (tmp_path / "x.txt").write_text("nope")
    with pytest.raises(HTTPError) as raised:
        client.log_artifact(run.info.run_id, str(tmp_path / "x.txt"))
    assert raised.value.response.status_code == 403
    assert raised.value.response.json()["error_code"] == "PERMISSION_DENIED"


def test_an_outsider_and_a_stranger_find_nothing(tracking, project, user, other_user, web):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_text("secret", "secret.txt")
    run = Run.objects.get(pk=int(run.info.run_id))
    url = artifact_url(web, project, run, "secret.txt")
    outsider = token_create(user=other_user, name="mlflow")[1]

    for method in ("GET", "PUT"):
        response = requests.request(method, url, data=b"x", headers=auth(outsider))
        assert response.status_code == 404
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert "secret.txt" not in response.text
        response = requests.request(method, url, data=b"x")
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHENTICATED"
    listing = requests.get(f"{web}/mlflow/{project.pk}/api/2.0/mlflow-artifacts/artifacts",
                           params={"path": f"{run.experiment_id}/{run.pk}/artifacts"},
                           headers=auth(outsider))
    assert listing.status_code == 404
    assert Artifact.objects.get(run=run).size == len("secret")


def test_a_run_of_another_project_does_not_exist_here(tracking, team, user, token, web):
    import mlflow

    from webapp.projects.services import project_create

    with mlflow.start_run() as run:
        mlflow.log_text("theirs", "theirs.txt")
    run = Run.objects.get(pk=int(run.info.run_id))
    other = project_create(team=team, name="Other", description="", user=user)

    response = requests.get(artifact_url(web, other, run, "theirs.txt"), headers=auth(token))

    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_runs_rlab_launched_take_no_artifacts(tracking, project, experiment, user, token, web):
    from webapp.runs.models import RunStatus

    run = Run.objects.create(experiment=experiment, launched_by=user, config={}, number=1,
                             status=RunStatus.RUNNING)

    response = requests.put(artifact_url(web, project, run, "x.txt"), data=b"x",
                            headers=auth(token))

    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
