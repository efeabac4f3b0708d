import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.webapp.datasets import hostile
from tests.webapp.datasets.conftest import confirm, stored_files, upload
from training.spec.prompt_dataset import load_prompt_dataset
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_create
from webapp.datasets.views import PENDING

pytestmark = pytest.mark.django_db

JSONL = (b'{"question": "Compute 2 + 3.", "answer": 5, "id": "a"}\n'
         b'{"question": "Compute 4 + 4.", "answer": "8", "id": "b"}\n')


@pytest.fixture
def saved(project, user):
    return dataset_create(project=project, user=user, name="sums", kind="prompts",
                          filename="sums.jsonl", file=io.BytesIO(JSONL),
                          mapping={"prompt": "question", "answer": "answer"})


def test_upload_shows_the_columns_guessed_mapping_and_a_preview(signed_in, project):
    response = upload(signed_in, project, JSONL)
    assert response.status_code == 302
    page = signed_in.get(response["Location"])
    assert page.status_code == 200
    assert page.context["columns"] == ("question", "answer", "id")
    form = page.context["form"]
    assert (form["name"].value(), form["prompt"].value(), form["answer"].value()) == (
        "sums", "question", "answer")
    assert [row[0] for row in page.context["preview"]] == ["Compute 2 + 3.", "Compute 4 + 4."]
    assert not Dataset.objects.exists()


def test_confirming_the_mapping_saves_the_dataset_and_its_normalised_rows(signed_in, project,
                                                                          user, dataset_dir):
    response = confirm(signed_in, upload(signed_in, project, JSONL, filename="sums.jsonl"))
    dataset = Dataset.objects.get()
    assert response.status_code == 302 and response["Location"] == dataset.get_absolute_url()
    assert (dataset.name, dataset.kind, dataset.format, dataset.row_count) == (
        "sums", "prompts", "jsonl", 2)
    assert dataset.original_filename == "sums.jsonl" and dataset.size_bytes == len(JSONL)
    assert dataset.columns == ["question", "answer", "id"]
    assert dataset.column_mapping == {"prompt": "question", "answer": "answer"}
    assert dataset.uploaded_by == user
    assert dataset.original_path.read_bytes() == JSONL
    assert [json.loads(line) for line in dataset.normalized_path.read_text().splitlines()] == [
        {"prompt": "Compute 2 + 3.", "answer": "5"}, {"prompt": "Compute 4 + 4.", "answer": "8"}]
    assert stored_files(dataset_dir) == {dataset.original_path, dataset.normalized_path}
    assert signed_in.session[PENDING] == {}


def test_a_preference_dataset_maps_three_columns(signed_in, project):
    data = b"instruction,chosen,rejected\nSay hi.,Hi!,Go away.\n"
    confirm(signed_in, upload(signed_in, project, data, filename="prefs.csv",
                              kind="preferences"))
    dataset = Dataset.objects.get()
    assert dataset.column_mapping == {"prompt": "instruction", "chosen": "chosen",
                                      "rejected": "rejected"}
    assert json.loads(dataset.normalized_path.read_text()) == {
        "prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."}


@pytest.mark.parametrize("data,filename,message", [
    (b"", "data.jsonl", "The file is empty."),
    (b'{"prompt": "p", "answer": 1}\n{oops\n', "data.jsonl", "Line 2: not valid JSON"),
    (b"prompt,answer\np,1,extra\n", "data.csv", "Line 2: 3 fields, but the header has 2."),
    (b"prompt,answer\n\xff,1\n", "data.csv", "The file is not UTF-8: the byte at offset 14"),
    (b"prompt\np\n", "data.csv", "A prompt dataset needs 2 columns (prompt, answer)"),
])
def test_a_file_that_does_not_parse_is_shown_with_its_error_and_nothing_is_kept(
        signed_in, project, dataset_dir, data, filename, message):
    response = upload(signed_in, project, data, filename=filename)
    assert response.status_code == 422
    [error] = response.context["form"].errors["file"]
    assert error.startswith(message)
    assert message.encode() in response.content
    assert not Dataset.objects.exists()
    assert stored_files(dataset_dir) == set()


def test_a_file_over_the_limit_is_refused_without_being_read(signed_in, project, settings,
                                                            dataset_dir):
    settings.RLAB_DATASET_MAX_BYTES = 100
    response = upload(signed_in, project, b'{"prompt": "p", "answer": 1}\n' * 10)
    assert response.status_code == 422
    assert response.context["form"].too_large  # the upload handler dropped it at the limit
    assert response.context["form"].errors["file"] == [
        "The file is over the limit of 100 bytes. Upload a smaller file, or split the dataset."]
    assert stored_files(dataset_dir) == set()


def test_a_difficulty_column_is_guessed_saved_and_read_by_the_trainer(signed_in, project):
    data = b"question,answer,difficulty\nCompute 2 + 3.,5,2\nCompute 40 + 4.,44,\n"
    step1 = upload(signed_in, project, data, filename="sums.csv")
    form = signed_in.get(step1["Location"]).context["form"]
    assert form["difficulty"].value() == "difficulty"
    assert confirm(signed_in, step1).status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.column_mapping == {"prompt": "question", "answer": "answer",
                                      "difficulty": "difficulty"}
    assert dataset.has_difficulty
    examples = load_prompt_dataset(dataset.normalized_path).examples
    assert [e.columns for e in examples] == [{"answer": "5", "difficulty": 2.0},
                                             {"answer": "44", "difficulty": None}]
    page = signed_in.get(dataset.get_absolute_url())
    assert page.context["preview"] == [["Compute 2 + 3.", "5", 2.0],
                                       ["Compute 40 + 4.", "44", None]]


def test_a_source_column_is_guessed_saved_and_read_by_dumps_sampler(signed_in, project):
    data = b"question,answer,data_source\nCompute 2 + 3.,5,easy\nCompute 40 + 4.,44,hard\n"
    step1 = upload(signed_in, project, data, filename="sums.csv")
    assert signed_in.get(step1["Location"]).context["form"]["source"].value() == "data_source"
    assert confirm(signed_in, step1).status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.column_mapping == {"prompt": "question", "answer": "answer",
                                      "source": "data_source"}
    examples = load_prompt_dataset(dataset.normalized_path, ["source"]).examples
    assert [e.columns for e in examples] == [{"answer": "5", "source": "easy"},
                                             {"answer": "44", "source": "hard"}]


def test_the_difficulty_column_may_be_left_unmapped(signed_in, project):
    data = b"question,answer,difficulty\nCompute 2 + 3.,5,easy\n"
    assert confirm(signed_in, upload(signed_in, project, data, filename="sums.csv"),
                   difficulty="").status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.column_mapping == {"prompt": "question", "answer": "answer"}
    assert not dataset.has_difficulty
    assert json.loads(dataset.normalized_path.read_text()) == {"prompt": "Compute 2 + 3.",
                                                               "answer": "5"}


def test_a_mapping_whose_rows_fail_saves_nothing_and_keeps_the_upload(signed_in, project,
                                                                     dataset_dir):
    data = b'{"question": "2 + 2?", "answer": 4, "note": "four"}\n'
    step1 = upload(signed_in, project, data)
    response = confirm(signed_in, step1, answer="note")
    assert response.status_code == 422
    assert response.context["form"].non_field_errors()[0].startswith(
        "Line 1: the answer 'four' is not a number.")
    assert not Dataset.objects.exists()
    assert len(stored_files(dataset_dir)) == 1  # the staged upload, to map again
    assert confirm(signed_in, step1).status_code == 302
    assert Dataset.objects.count() == 1


def test_the_same_column_cannot_fill_two_roles(signed_in, project):
    response = confirm(signed_in, upload(signed_in, project, JSONL), answer="question")
    assert response.status_code == 422
    assert response.context["form"].errors["answer"] == [
        "Prompt already uses 'question'; choose a different column."]


def test_the_difficulty_cannot_reuse_a_mapped_column(signed_in, project):
    response = confirm(signed_in, upload(signed_in, project, JSONL), difficulty="answer")
    assert response.status_code == 422
    assert response.context["form"].errors["difficulty"] == [
        "Answer already uses 'answer'; choose a different column."]
    assert not Dataset.objects.exists()


def test_discarding_an_upload_removes_the_staged_file(signed_in, project, dataset_dir):
    step1 = upload(signed_in, project, JSONL)
    response = signed_in.post(step1["Location"], {"discard": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("datasets:list", args=[project.pk])
    assert stored_files(dataset_dir) == set()
    assert not Dataset.objects.exists()
    again = signed_in.get(step1["Location"])
    assert again.status_code == 302
    assert again["Location"] == reverse("datasets:upload", args=[project.pk])


def test_a_name_taken_while_mapping_is_refused_and_nothing_is_saved(signed_in, project, user,
                                                                   dataset_dir):
    step1 = upload(signed_in, project, JSONL, name="sums")
    other = dataset_create(project=project, user=user, name="sums", kind="prompts",
                           filename="other.jsonl",
                           file=io.BytesIO(b'{"prompt": "p", "answer": 1}\n'),
                           mapping={"prompt": "prompt", "answer": "answer"})
    before = stored_files(dataset_dir)
    response = confirm(signed_in, step1)
    assert response.status_code == 422
    assert response.context["form"].errors["name"] == [
        "This project already has a dataset with this name."]
    assert list(Dataset.objects.all()) == [other]
    assert stored_files(dataset_dir) == before


def test_someone_elses_upload_token_leads_nowhere(client, signed_in, project, member_of):
    step1 = upload(signed_in, project, JSONL)
    client.force_login(member_of("member"))
    response = client.post(step1["Location"], {"name": "stolen", "prompt": "question",
                                               "answer": "answer"})
    assert response.status_code == 302
    assert response["Location"] == reverse("datasets:upload", args=[project.pk])
    assert not Dataset.objects.exists()


def test_identical_files_are_stored_once(signed_in, project, dataset_dir):
    confirm(signed_in, upload(signed_in, project, JSONL, name="first"))
    confirm(signed_in, upload(signed_in, project, JSONL, name="second"))
    first, second = Dataset.objects.order_by("name")
    assert first.sha256 == second.sha256
    assert stored_files(dataset_dir) == {first.original_path, first.normalized_path}


def test_viewer_cannot_upload(client, project, member_of, dataset_dir):
    client.force_login(member_of("viewer"))
    response = client.post(reverse("datasets:upload", args=[project.pk]), {
        "name": "x", "kind": "prompts", "file": SimpleUploadedFile("d.jsonl", JSONL)})
    assert response.status_code == 403
    assert stored_files(dataset_dir) == set()


def test_outsider_gets_404_for_the_dataset_and_its_file(client, saved, other_user):
    client.force_login(other_user)
    assert client.get(saved.get_absolute_url()).status_code == 404
    assert client.get(reverse("datasets:download", args=[saved.pk])).status_code == 404
    assert client.get(reverse("datasets:list", args=[saved.project.pk])).status_code == 404


def test_viewer_sees_the_list_and_the_detail_with_a_preview(client, saved, member_of):
    client.force_login(member_of("viewer"))
    listing = client.get(reverse("datasets:list", args=[saved.project.pk]))
    assert list(listing.context["datasets"]) == [saved]
    assert not listing.context["can_upload"]
    detail = client.get(saved.get_absolute_url())
    assert detail.context["preview"] == [["Compute 2 + 3.", "5"], ["Compute 4 + 4.", "8"]]
    assert detail.context["mapping"] == [("prompt", "question"), ("answer", "answer")]


def test_download_is_an_attachment_that_is_never_rendered(signed_in, saved):
    response = signed_in.get(reverse("datasets:download", args=[saved.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == JSONL
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="sums.jsonl"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_download_of_the_normalised_rows(signed_in, saved):
    response = signed_in.get(reverse("datasets:download", args=[saved.pk]),
                             {"file": "normalized"})
    assert response["Content-Disposition"] == 'attachment; filename="sums.normalized.jsonl"'
    assert b"".join(response.streaming_content) == saved.normalized_path.read_bytes()


def test_html_in_a_dataset_is_escaped_everywhere(signed_in, project):
    script = "<script>alert(1)</script>"
    data = json.dumps({"prompt": script, "answer": 1, script: "x"}).encode() + b"\n"
    step1 = upload(signed_in, project, data, filename="<b>x</b>.jsonl")
    page = signed_in.get(step1["Location"])
    assert script.encode() not in page.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.content
    detail = signed_in.get(confirm(signed_in, step1)["Location"])
    assert script.encode() not in detail.content and b"<b>x</b>" not in detail.content


def test_a_missing_file_is_a_404_not_a_crash(signed_in, saved):
    saved.original_path.chmod(0o644)
    saved.original_path.unlink()
    assert signed_in.get(reverse("datasets:download", args=[saved.pk])).status_code == 404


def test_project_page_links_to_its_datasets(signed_in, saved):
    response = signed_in.get(saved.project.get_absolute_url())
    assert reverse("datasets:list", args=[saved.project.pk]).encode() in response.content


def test_a_parquet_upload_goes_through_both_steps(signed_in, project):
    buffer = io.BytesIO()
    pq.write_table(pa.table({"problem": ["1 + 1?", "2 + 5?"], "target": [2, 7]}), buffer)
    confirm(signed_in, upload(signed_in, project, buffer.getvalue(), filename="sums.parquet"))
    dataset = Dataset.objects.get()
    assert (dataset.format, dataset.row_count) == ("parquet", 2)
    assert dataset.column_mapping == {"prompt": "problem", "answer": "target"}


def test_both_steps_check_the_csrf_token(project, user, dataset_dir):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("datasets:upload", args=[project.pk]), {
        "name": "x", "kind": "prompts", "file": SimpleUploadedFile("d.jsonl", JSONL)})
    assert response.status_code == 403
    assert stored_files(dataset_dir) == set()
    page = client.get(reverse("datasets:upload", args=[project.pk]))
    token = page.context["csrf_token"]
    step1 = client.post(reverse("datasets:upload", args=[project.pk]), {
        "name": "x", "kind": "prompts", "file": SimpleUploadedFile("d.jsonl", JSONL),
        "csrfmiddlewaretoken": str(token)})
    assert step1.status_code == 302
    mapping = {"name": "x", "prompt": "question", "answer": "answer"}
    assert client.post(step1["Location"], mapping).status_code == 403
    assert client.post(step1["Location"], {"discard": "1"}).status_code == 403
    assert not Dataset.objects.exists()
    saved = client.post(step1["Location"], {**mapping, "csrfmiddlewaretoken": str(token)})
    assert saved.status_code == 302 and Dataset.objects.count() == 1


# Hostile files: refused as they are read, with what to do, and nothing kept


def _refusal(response) -> str:
    assert response.status_code == 422
    [error] = response.context["form"].errors["file"]
    return error


def test_a_small_parquet_of_four_million_rows_is_refused_by_its_footer(signed_in, project,
                                                                       dataset_dir):
    data = hostile.many_small_rows(4_000_000)
    assert len(data) < 40_000
    error = _refusal(upload(signed_in, project, data, filename="rows.parquet"))
    # The exact count: from the footer, before a row was decoded.
    assert error == ("The file has 4,000,000 rows, more than the limit of 1,000,000. Split the "
                     "dataset into smaller files, or ask an administrator to raise "
                     "RLAB_DATASET_MAX_ROWS.")
    assert stored_files(dataset_dir) == set()


def test_a_parquet_footer_that_understates_its_rows_is_refused_all_the_same(signed_in,
                                                                           project):
    data = hostile.with_footer(hostile.many_small_rows(4_000_000), {hostile.FILE_NUM_ROWS: 10})
    error = _refusal(upload(signed_in, project, data, filename="rows.parquet"))
    assert error.startswith("The file has 4,000,000 rows, more than the limit of 1,000,000.")


def test_a_small_parquet_whose_text_decodes_past_the_limit_is_refused(signed_in, project,
                                                                      dataset_dir):
    # 40,000 rows of the same 10 KB: 400 MB once decoded, from a file of a few KB.
    data = hostile.repeated_text(40_000, 10_000, answer=["1"] * 40_000)
    assert len(data) < 100_000
    error = _refusal(upload(signed_in, project, data, filename="text.parquet"))
    assert error == ("The file holds more than 200 MB of data once decoded, the limit. Split the "
                     "dataset into smaller files, or ask an administrator to raise "
                     "RLAB_DATASET_MAX_DECODED_BYTES.")
    assert stored_files(dataset_dir) == set()


def test_a_parquet_row_group_that_lies_about_its_size_is_refused(signed_in, project):
    good = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["1 + 1?"], "answer": ["2"]}), good)
    data = hostile.with_footer(good.getvalue(),
                               {hostile.COLUMN_TOTAL_UNCOMPRESSED_SIZE: 2**50})
    error = _refusal(upload(signed_in, project, data, filename="lies.parquet"))
    assert error.startswith("The file declares 2048 TB of data once uncompressed, more than the "
                            "limit of 200 MB.")


def test_a_jsonl_line_longer_than_a_row_may_be_is_refused(signed_in, project, dataset_dir):
    data = (b'{"prompt": "1 + 1?", "answer": 2}\n'
            b'{"prompt": "' + b"x" * (1024 * 1024) + b'", "answer": 2}\n')
    error = _refusal(upload(signed_in, project, data))
    assert error == "Line 2 is longer than 1 MB, the limit for one row. Shorten that row."
    assert stored_files(dataset_dir) == set()


def test_a_csv_over_the_row_limit_is_refused(signed_in, project, settings, dataset_dir):
    settings.RLAB_DATASET_MAX_ROWS = 100
    data = b"prompt,answer\n" + b"1 + 1?,2\n" * 101
    error = _refusal(upload(signed_in, project, data, filename="sums.csv"))
    assert error == ("The file has more than 100 rows, the limit. Split the dataset into smaller "
                     "files, or ask an administrator to raise RLAB_DATASET_MAX_ROWS.")
    assert stored_files(dataset_dir) == set()


def test_a_limit_lowered_before_the_mapping_step_sends_the_upload_back(signed_in, project,
                                                                      settings, dataset_dir):
    step1 = upload(signed_in, project, JSONL)
    settings.RLAB_DATASET_MAX_ROWS = 1
    response = signed_in.post(step1["Location"], {
        "name": "sums", "prompt": "question", "answer": "answer"}, follow=True)
    assert response.redirect_chain == [(reverse("datasets:upload", args=[project.pk]), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "The file has more than 1 row, the limit. Split the dataset into smaller files, or ask "
        "an administrator to raise RLAB_DATASET_MAX_ROWS."]
    assert not Dataset.objects.exists()
    assert stored_files(dataset_dir) == set()


def test_a_good_large_csv_is_saved_with_exactly_its_rows(signed_in, project, dataset_dir):
    # Past FILE_UPLOAD_MAX_MEMORY_SIZE: Django spools it to a temporary file, read from there.
    rows = [(f"Compute {n} + {n}.", 2 * n) for n in range(150_000)]
    data = b"question,answer\n" + "".join(f"{q},{a}\n" for q, a in rows).encode()
    assert len(data) > 3 * 1024 * 1024
    step1 = upload(signed_in, project, data, filename="sums.csv")
    page = signed_in.get(step1["Location"])
    assert page.context["pending"]["row_count"] == 150_000
    assert [row[0] for row in page.context["preview"]] == [q for q, _ in rows[:10]]
    assert confirm(signed_in, step1).status_code == 302
    dataset = Dataset.objects.get()
    assert (dataset.row_count, dataset.size_bytes) == (150_000, len(data))
    assert dataset.original_path.read_bytes() == data
    with dataset.normalized_path.open(encoding="utf-8") as normalised:
        assert [json.loads(line) for line in normalised] == [
            {"prompt": q, "answer": str(a)} for q, a in rows]
    assert stored_files(dataset_dir) == {dataset.original_path, dataset.normalized_path}


def test_a_good_large_parquet_is_saved_with_exactly_its_rows(signed_in, project):
    prompts = [f"Compute {n} + {n}. " + "x" * (n % 97) for n in range(60_000)]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"problem": prompts, "target": list(range(60_000))}), buffer,
                   compression="none", row_group_size=25_000)
    assert len(buffer.getvalue()) > 3 * 1024 * 1024
    assert confirm(signed_in, upload(signed_in, project, buffer.getvalue(),
                                     filename="sums.parquet")).status_code == 302
    dataset = Dataset.objects.get()
    assert (dataset.format, dataset.row_count) == ("parquet", 60_000)
    with dataset.normalized_path.open(encoding="utf-8") as normalised:
        assert [json.loads(line) for line in normalised] == [
            {"prompt": prompt, "answer": str(n)} for n, prompt in enumerate(prompts)]
