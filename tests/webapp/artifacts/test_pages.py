"""The artifact pages through Django's client: the run page's panel, folders, a file's page with
its preview, downloads and images, and who may open them."""

from __future__ import annotations

import json
import re
from html import escape

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from tests.webapp.artifacts.conftest import image_bytes
from webapp.artifacts.models import LoggedModel
from webapp.artifacts.previews import JSON_MAX_BYTES, TABLE_PAGE_ROWS, TEXT_PREVIEW_BYTES
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs.services import run_launch
from webapp.teams.models import Role
from webapp.teams.services import team_create

pytestmark = pytest.mark.django_db

SCRIPT_NAME = '<img src=x onerror="alert(1)">"quoted" \'single\' é✓.txt'


@pytest.fixture
def run(experiment, user):
    return run_launch(experiment=experiment, user=user)


def _body(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _download(response) -> bytes:
    """The body of a streamed response, read as the ASGI server reads it."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response])

    return async_to_sync(read)()


def detail_url(artifact) -> str:
    run_id = artifact.run_id or artifact.logged_model.source_run_id
    return reverse("artifacts:detail", args=[run_id, artifact.pk])


# The run page's panel and the folder listing

def test_run_page_has_no_artifacts_panel_without_files(signed_in, run, artifact_dir):
    body = _body(signed_in.get(reverse("runs:detail", args=[run.pk])))
    assert 'id="artifacts"' not in body


def test_run_page_lists_the_top_folder(signed_in, run, save_artifact):
    save_artifact(run, "config.json", b"{}")
    save_artifact(run, "plots/loss.png", image_bytes("PNG"))
    save_artifact(run, "plots/deep/reward.png", image_bytes("PNG"))
    body = _body(signed_in.get(reverse("runs:detail", args=[run.pk])))
    panel = body[body.index('id="artifacts"'):]
    assert "config.json" in panel
    assert "plots/" in panel and "2 files" in panel
    assert "loss.png" not in panel  # inside a folder: listed when the folder is opened
    assert f'href="{reverse("artifacts:list", args=[run.pk])}?path=plots/"' in panel
    assert 'hx-target="#artifact-listing"' in panel


def test_a_folder_lists_its_children_with_breadcrumbs(signed_in, run, save_artifact):
    save_artifact(run, "plots/loss.png", image_bytes("PNG"))
    save_artifact(run, "plots/deep/reward.png", image_bytes("PNG"))
    save_artifact(run, "plotsx.txt", b"not in plots/")
    body = _body(signed_in.get(reverse("artifacts:list", args=[run.pk]), {"path": "plots"}))
    listing = body[body.index('id="artifact-listing"'):]
    assert "loss.png" in listing and "deep/" in listing
    assert "reward.png" not in listing and "plotsx.txt" not in listing
    assert '<b class="mono">plots</b>' in listing  # the folder shown, in the breadcrumbs
    assert "<!doctype html>" in body  # a page of its own without JavaScript


def test_htmx_gets_the_listing_alone(signed_in, run, save_artifact):
    save_artifact(run, "plots/deep/reward.png", image_bytes("PNG"))
    body = _body(signed_in.get(reverse("artifacts:list", args=[run.pk]),
                               {"path": "plots/deep/"}, HTTP_HX_REQUEST="true"))
    assert body.lstrip().startswith('<div id="artifact-listing"')
    assert "reward.png" in body and "<html" not in body
    assert 'href="{}?path=plots/"'.format(reverse("artifacts:list", args=[run.pk])) in body


def test_folder_sizes_add_up_the_files_under_them(signed_in, run, save_artifact):
    save_artifact(run, "ckpt/a.bin", b"x" * 1500)
    save_artifact(run, "ckpt/sub/b.bin", b"x" * 1500)
    body = _body(signed_in.get(reverse("artifacts:list", args=[run.pk])))
    assert re.search(r"ckpt/</a>\s*<span[^>]*>2 files</span></td>\s*<td[^>]*>2\.9\xa0KB", body)


def test_logged_models_are_listed_with_their_files(signed_in, run, save_artifact, logged_model):
    save_artifact(logged_model, "model/config.json", b'{"n_layer": 2}')
    save_artifact(logged_model, "MLmodel", b"flavors: {}\n")
    body = _body(signed_in.get(reverse("runs:detail", args=[run.pk])))
    assert 'id="artifacts"' in body  # a run with only a logged model shows the panel
    assert "Logged models" in body and logged_model.pk in body and "2 · 26" in body
    listing = _body(signed_in.get(reverse("artifacts:list", args=[run.pk]),
                                  {"model": logged_model.pk}, HTTP_HX_REQUEST="true"))
    assert "MLmodel" in listing and "model/" in listing
    inner = _body(signed_in.get(reverse("artifacts:list", args=[run.pk]),
                                {"model": logged_model.pk, "path": "model/"}))
    assert "config.json" in inner


def test_file_names_are_escaped(signed_in, run, save_artifact):
    artifact = save_artifact(run, f"odd/{SCRIPT_NAME}", b"hello")
    for url in (reverse("artifacts:list", args=[run.pk]) + "?path=odd/", detail_url(artifact)):
        body = _body(signed_in.get(url))
        assert "<img src=x" not in body
        assert escape(SCRIPT_NAME) in body


# A file's page

def test_text_is_previewed(signed_in, run, save_artifact):
    artifact = save_artifact(run, "notes.txt", "ünïcode <b>bold</b>\n".encode())
    body = _body(signed_in.get(detail_url(artifact)))
    assert '<pre class="text-block artifact-text" id="artifact-text">ünïcode &lt;b&gt;bold' in body
    assert 'id="preview-cut"' not in body


def test_long_text_is_cut_and_says_so(signed_in, run, save_artifact):
    line = "0123456789abcdef" * 4 + "\n"
    artifact = save_artifact(run, "train.log", (line * 5000).encode())  # 325 KB
    body = _body(signed_in.get(detail_url(artifact)))
    text = re.search(r'id="artifact-text">(.*?)</pre>', body, re.S).group(1)
    assert len(text) == TEXT_PREVIEW_BYTES
    assert 'id="preview-cut"' in body and "64.0\xa0KB" in body


def test_text_cut_inside_a_character_drops_it(signed_in, run, save_artifact):
    data = b"a" * (TEXT_PREVIEW_BYTES - 1) + "é".encode() + b"tail"
    artifact = save_artifact(run, "cut.txt", data)
    body = _body(signed_in.get(detail_url(artifact)))
    assert 'id="preview-cut"' in body
    assert re.search(r'id="artifact-text">a+</pre>', body)


def test_json_is_pretty_printed(signed_in, run, save_artifact):
    artifact = save_artifact(run, "metrics.json", b'{"lr":1e-06,"tag":"<x>","nested":{"a":[1,2]}}')
    body = _body(signed_in.get(detail_url(artifact)))
    assert '{\n  &quot;lr&quot;: 1e-06,\n  &quot;tag&quot;: &quot;&lt;x&gt;&quot;,' in body


def test_json_over_the_limit_is_previewed_as_text(signed_in, run, save_artifact):
    data = json.dumps({"values": ["x" * 1000] * (JSON_MAX_BYTES // 1000 + 10)}).encode()
    artifact = save_artifact(run, "big.json", data)
    body = _body(signed_in.get(detail_url(artifact)))
    assert '<pre class="text-block artifact-text" id="artifact-text">{&quot;values&quot;' in body
    assert 'id="preview-cut"' in body


def test_binary_file_shows_size_type_and_download(signed_in, run, save_artifact):
    artifact = save_artifact(run, "model.safetensors", b"\x00\x01\x02" * 1000,
                             content_type="application/octet-stream")
    body = _body(signed_in.get(detail_url(artifact)))
    assert 'id="no-preview"' in body and "2.9\xa0KB" in body
    assert "application/octet-stream" in body
    assert f'href="{reverse("artifacts:download", args=[run.pk, artifact.pk])}"' in body
    assert "<img" not in body and 'id="artifact-text"' not in body


def test_a_files_type_is_told_by_its_name_first(signed_in, run, save_artifact):
    named = save_artifact(run, "config.json", b"{}", content_type="text/plain")
    unnamed = save_artifact(run, "MLmodel", b"flavors: {}", content_type="text/plain")
    assert '<b class="mono" id="artifact-type">application/json</b>' in _body(
        signed_in.get(detail_url(named)))
    assert '<b class="mono" id="artifact-type">text/plain</b>' in _body(
        signed_in.get(detail_url(unnamed)))


def test_text_that_is_not_utf8_is_not_previewed(signed_in, run, save_artifact):
    artifact = save_artifact(run, "latin1.txt", "café".encode("latin-1"))
    assert 'id="no-preview"' in _body(signed_in.get(detail_url(artifact)))


@pytest.mark.parametrize("fmt, content_type", [
    ("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")])
def test_images_are_shown(signed_in, run, save_artifact, fmt, content_type):
    data = image_bytes(fmt)
    artifact = save_artifact(run, f"samples/picture.{fmt.lower()}", data)
    body = _body(signed_in.get(detail_url(artifact)))
    image_url = reverse("artifacts:image", args=[run.pk, artifact.pk])
    assert f'<img class="artifact-image" id="artifact-image" src="{image_url}"' in body
    response = signed_in.get(image_url)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert _download(response) == data


def test_an_image_is_told_by_its_bytes_not_its_name(signed_in, run, save_artifact):
    data = image_bytes("PNG")
    artifact = save_artifact(run, "no-extension", data, content_type="text/html")
    assert 'id="artifact-image"' in _body(signed_in.get(detail_url(artifact)))
    assert signed_in.get(reverse("artifacts:image", args=[run.pk, artifact.pk]))[
        "Content-Type"] == "image/png"


@pytest.mark.parametrize("path, data", [
    ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("page.html", b"<html><script>alert(1)</script></html>"),
    ("fake.png", b"<html><script>alert(1)</script></html>"),
])
def test_svg_and_html_are_never_shown_inline(signed_in, run, save_artifact, path, data):
    artifact = save_artifact(run, path, data)
    body = _body(signed_in.get(detail_url(artifact)))
    assert "<img" not in body and "<script>alert(1)" not in body
    assert signed_in.get(reverse("artifacts:image", args=[run.pk, artifact.pk])).status_code \
        == 404
    download = signed_in.get(reverse("artifacts:download", args=[run.pk, artifact.pk]))
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"].startswith("attachment;")


# MLflow tables

def _table(rows: int) -> bytes:
    return json.dumps({"columns": ["prompt", "reward", "extra"],
                       "data": [[f"q{i} <b>", (i * 7) % 10 / 10, {"i": i}] for i in range(rows)]
                       }).encode()


def test_an_mlflow_table_is_shown_page_by_page(signed_in, run, save_artifact):
    artifact = save_artifact(run, "eval/predictions.json", _table(120))
    body = _body(signed_in.get(detail_url(artifact)))
    assert "A table of 120 rows and 3 columns, page 1 of 3." in body
    table = body[body.index('class="table mlflow-table"'):]
    assert table.count("<tr>") == 1 + TABLE_PAGE_ROWS  # the header row and a page of rows
    assert '<div class="cell">q0 &lt;b&gt;</div>' in table
    assert '<div class="cell">{&quot;i&quot;: 0}</div>' in table
    last = _body(signed_in.get(detail_url(artifact), {"page": 3}))
    assert "page 3 of 3" in last and "q119 &lt;b&gt;" in last and "q99 " not in last


def test_a_table_sorts_by_a_column(signed_in, run, save_artifact):
    artifact = save_artifact(run, "t.json", json.dumps(
        {"columns": ["name", "score"],
         "data": [["a", 0.5], ["b", None], ["c", 2], ["d", -1]]}).encode())
    cells = lambda body: re.findall(r'<div class="cell">([a-d])</div>', body)  # noqa: E731
    assert cells(_body(signed_in.get(detail_url(artifact), {"page": 1, "sort": 1}))) \
        == ["d", "a", "c", "b"]
    descending = _body(signed_in.get(detail_url(artifact),
                                      {"page": 1, "sort": 1, "order": "desc"},
                                      HTTP_HX_REQUEST="true"))
    assert descending.lstrip().startswith('<div id="artifact-table">')
    assert cells(descending) == ["c", "a", "d", "b"]  # empty cells last either way
    assert 'aria-sort="descending"' in descending


@pytest.mark.parametrize("query", [{"page": "-1"}, {"page": "x", "sort": "99"},
                                   {"page": "999999999999999999999"}])
def test_bad_table_pages_fall_back_to_the_first_or_last(signed_in, run, save_artifact, query):
    artifact = save_artifact(run, "t.json", _table(3))
    assert "A table of 3 rows" in _body(signed_in.get(detail_url(artifact), query))


def test_json_that_is_not_a_table_is_not_shown_as_one(signed_in, run, save_artifact):
    artifact = save_artifact(run, "t.json", b'{"columns": ["a", "b"], "data": [[1]]}')
    body = _body(signed_in.get(detail_url(artifact)))
    assert "mlflow-table" not in body and 'id="artifact-text"' in body


# Downloads

def test_download_is_the_file_as_an_attachment(signed_in, run, save_artifact):
    data = bytes(range(256)) * 5000
    artifact = save_artifact(run, "weights/adapter.bin", data)
    response = signed_in.get(reverse("artifacts:download", args=[run.pk, artifact.pk]))
    assert response.status_code == 200
    assert response.is_async  # streamed under ASGI, never read whole first
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="adapter.bin"'
    assert response["Content-Length"] == str(len(data))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert _download(response) == data


@pytest.mark.parametrize("name, header", [
    ('say "hi".txt', 'attachment; filename="say \\"hi\\".txt"'),
    ("résumé ✓.txt", "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20%E2%9C%93.txt"),
    ("line\nbreak\r.txt", 'attachment; filename="line_break_.txt"'),
])
def test_download_names_are_quoted(signed_in, run, save_artifact, name, header):
    artifact = save_artifact(run, f"dir/{name}", b"x")
    response = signed_in.get(reverse("artifacts:download", args=[run.pk, artifact.pk]))
    assert response["Content-Disposition"] == header


def test_a_file_missing_from_the_store_says_so(signed_in, run, save_artifact, artifact_dir):
    artifact = save_artifact(run, "gone.txt", b"bye")
    (artifact_dir / artifact.storage_name).unlink()
    assert 'id="artifact-missing"' in _body(signed_in.get(detail_url(artifact)))
    assert signed_in.get(reverse("artifacts:download", args=[run.pk, artifact.pk])
                         ).status_code == 404


# Who may open them

@pytest.fixture
def urls(run, save_artifact):
    artifact = save_artifact(run, "plots/loss.png", image_bytes("PNG"))
    return [reverse("runs:detail", args=[run.pk]),
            reverse("artifacts:list", args=[run.pk]),
            reverse("artifacts:detail", args=[run.pk, artifact.pk]),
            reverse("artifacts:download", args=[run.pk, artifact.pk]),
            reverse("artifacts:image", args=[run.pk, artifact.pk])]


def test_outsiders_get_404_on_every_url(client, other_user, urls):
    client.force_login(other_user)
    for url in urls:
        assert client.get(url).status_code == 404, url
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 404, url


def test_viewers_may_read_every_url(client, member_of, urls):
    client.force_login(member_of(Role.VIEWER))
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_anonymous_users_are_sent_to_sign_in(client, urls):
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.fixture
def foreign_run(other_user):
    """A run of another team's project, that `user` cannot see."""
    team = team_create(name="Elsewhere", user=other_user)
    project = project_create(team=team, name="Secret", description="", user=other_user)
    experiment = experiment_create(project=project, author=other_user, name="hidden",
                                   description="", config={"max_steps": 1})
    return run_launch(experiment=experiment, user=other_user)


def test_a_file_of_another_run_is_not_reached_through_a_visible_one(
        signed_in, run, experiment, user, foreign_run, save_artifact):
    secret = save_artifact(foreign_run, "secret.txt", b"secret")
    sibling = run_launch(experiment=experiment, user=user)
    own_other = save_artifact(sibling, "other.txt", b"other run")
    for artifact in (secret, own_other):
        for name in ("artifacts:detail", "artifacts:download", "artifacts:image"):
            assert signed_in.get(reverse(name, args=[run.pk, artifact.pk])).status_code == 404
    assert signed_in.get(reverse("artifacts:download", args=[foreign_run.pk, secret.pk])
                         ).status_code == 404


def test_a_model_of_another_run_is_not_reached_through_a_visible_one(
        signed_in, run, foreign_run, save_artifact):
    model = LoggedModel.objects.create(experiment=foreign_run.experiment,
                                       source_run=foreign_run, name="secret-model")
    secret = save_artifact(model, "weights.bin", b"secret")
    list_url = reverse("artifacts:list", args=[run.pk])
    assert signed_in.get(list_url, {"model": model.pk}).status_code == 404
    assert signed_in.get(reverse("artifacts:download", args=[run.pk, secret.pk])
                         ).status_code == 404
    # A model claiming the visible run as its source, but kept in another project's experiment.
    stray = LoggedModel.objects.create(experiment=foreign_run.experiment, source_run=run,
                                       name="stray")
    stray_file = save_artifact(stray, "weights.bin", b"secret")
    assert signed_in.get(list_url, {"model": stray.pk}).status_code == 404
    assert signed_in.get(reverse("artifacts:download", args=[run.pk, stray_file.pk])
                         ).status_code == 404
    assert "stray" not in _body(signed_in.get(list_url))


def test_image_cells_of_a_table_show_the_images(signed_in, run, save_artifact):
    image = save_artifact(run, "table_images/samples/1.webp", image_bytes("WEBP"))
    save_artifact(run, "table_images/samples/1.png", image_bytes("PNG"))
    table = save_artifact(run, "samples.json", json.dumps({
        "columns": ["prompt", "picture"],
        "data": [["a cat", {"type": "image", "filepath": "table_images/samples/1.png",
                            "compressed_filepath": "table_images/samples/1.webp"}],
                 ["elsewhere", {"type": "image", "filepath": "not/logged.png"}]]}).encode())
    body = _body(signed_in.get(detail_url(table)))
    image_url = reverse("artifacts:image", args=[run.pk, image.pk])
    assert f'<img class="table-image" src="{image_url}" alt="table_images/samples/1.webp"' in body
    assert "&quot;not/logged.png&quot;" in body  # not among the run's files: shown as text


def test_an_htmx_history_restore_gets_the_whole_page(signed_in, run, save_artifact):
    artifact = save_artifact(run, "t.json", _table(3))
    body = _body(signed_in.get(detail_url(artifact), {"page": 1, "sort": 1},
                               HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"))
    assert "<!doctype html>" in body and "mlflow-table" in body
