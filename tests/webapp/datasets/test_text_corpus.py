"""Text-corpus datasets: plain text or a text column uploaded, refused when unusable, read by the
trainer, and chosen for RMT experiments only."""

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.webapp.datasets.conftest import confirm, stored_files, upload
from training.spec.config import RunConfig
from training.spec.text_corpus import load_text_corpus
from webapp.datasets.models import Dataset
from webapp.datasets.parsing import TEXT, DatasetError, Reader
from webapp.datasets.services import dataset_create
from webapp.datasets.streaming import Limits
from webapp.experiments.models import Experiment
from webapp.runs.services import run_launch

pytestmark = pytest.mark.django_db

PROSE = (b"Bread\n\nTo make a loaf, a baker needs flour,\nwater, yeast and salt.\n\n\n"
         b"The dough rises in a warm place for an hour or two.\n")
PASSAGES = ["To make a loaf, a baker needs flour, water, yeast and salt.",
            "The dough rises in a warm place for an hour or two."]


def _corpus(project, user, name="prose", data=PROSE, filename="prose.txt"):
    return dataset_create(project=project, user=user, name=name, kind="text_corpus",
                          filename=filename, file=io.BytesIO(data), mapping={"text": "text"})


def test_plain_text_is_uploaded_paragraph_by_paragraph(signed_in, project, dataset_dir):
    step1 = upload(signed_in, project, PROSE, filename="prose.txt", name="prose",
                   kind="text_corpus")
    assert step1.status_code == 302
    page = signed_in.get(step1["Location"])
    assert page.context["columns"] == ("text",) and page.context["form"]["text"].value() == "text"
    assert [row[0] for row in page.context["preview"]] == PASSAGES
    assert confirm(signed_in, step1).status_code == 302
    dataset = Dataset.objects.get()
    assert (dataset.kind, dataset.format, dataset.row_count) == ("text_corpus", TEXT, 2)
    assert [json.loads(line) for line in dataset.normalized_path.read_text().splitlines()] == [
        {"text": text} for text in PASSAGES]
    # the trainer reads the normalised file: one passage a line, numbered by its line
    assert [(p.passage_id, p.text) for p in load_text_corpus(dataset.normalized_path)] == [
        ("#1", PASSAGES[0]), ("#2", PASSAGES[1])]
    assert stored_files(dataset_dir) == {dataset.original_path, dataset.normalized_path}


def test_a_text_column_of_json_lines_is_guessed_and_saved(signed_in, project):
    data = (json.dumps({"id": 1, "content": PASSAGES[0]}) + "\n"
            + json.dumps({"id": 2, "content": PASSAGES[1]}) + "\n").encode()
    step1 = upload(signed_in, project, data, filename="web.jsonl", kind="text_corpus")
    assert signed_in.get(step1["Location"]).context["form"]["text"].value() == "content"
    assert confirm(signed_in, step1).status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.column_mapping == {"text": "content"} and dataset.format == "jsonl"
    assert [p.text for p in load_text_corpus(dataset.normalized_path)] == PASSAGES


def test_a_txt_file_is_still_csv_for_a_prompt_dataset(signed_in, project):
    step1 = upload(signed_in, project, b"prompt,answer\nCompute 1 + 1.,2\n", filename="sums.txt")
    assert signed_in.get(step1["Location"]).context["columns"] == ("prompt", "answer")


@pytest.mark.parametrize("data, message", [
    (b"Caf\xe9 au lait is served in a bowl in the morning.\n",
     "The file is not UTF-8: the byte at offset 3 (line 1) is 0xE9"),
    (b"A paragraph of text that goes on\x00 with a NUL.\n", "Line 1 contains a NUL character"),
    (b"  \n\n \t\n", "The file is empty"),
    (b"Bread\n\nRivers\n\nClocks and bees\n", "The file holds no paragraph of at least 20"),
])
def test_unusable_text_is_refused_with_what_to_do(signed_in, project, data, message,
                                                  dataset_dir):
    response = upload(signed_in, project, data, filename="prose.txt", kind="text_corpus")
    assert response.status_code == 422
    [error] = response.context["form"].errors["file"]
    assert error.startswith(message), error
    assert stored_files(dataset_dir) == set()


def test_a_corpus_over_the_size_limit_is_refused(signed_in, project, settings, dataset_dir):
    settings.RLAB_DATASET_MAX_BYTES = 100
    response = upload(signed_in, project, PROSE * 3, filename="prose.txt", kind="text_corpus")
    assert response.status_code == 422
    assert response.context["form"].errors["file"] == [
        "The file is over the limit of 100 bytes. Upload a smaller file, or split the dataset."]
    assert stored_files(dataset_dir) == set()


def test_a_paragraph_over_the_row_limit_is_refused():
    data = b"Short first line of the paragraph.\n" + b"word " * 60 + b"\n"
    reader = Reader(io.BytesIO(data), filename="prose.txt", max_bytes=10_000, plain_text=True,
                    limits=Limits(rows=100, decoded_bytes=10_000, row_bytes=200))
    with pytest.raises(DatasetError) as bad:
        list(reader)
    assert bad.value.messages[0].startswith(
        "The paragraph that starts on line 1 is longer than 200 bytes")


def test_short_or_empty_text_cells_are_refused_row_by_row(project, user):
    data = (json.dumps({"text": PASSAGES[0]}) + "\n" + json.dumps({"text": "Too short."}) + "\n"
            + json.dumps({"text": "  "}) + "\n").encode()
    with pytest.raises(DatasetError) as bad:
        _corpus(project, user, data=data, filename="web.jsonl")
    assert bad.value.messages == [
        "Line 2: the text is shorter than 20 characters, too little to predict the next token "
        "from. Remove the row, or join it to the next.",
        "Line 3 has an empty 'text', the text column."]
    assert not Dataset.objects.exists()


def _form_data(**overrides):
    return {"name": "mid", "description": "", **RunConfig().to_dict(), **overrides}


def test_an_rmt_experiment_trains_on_a_text_corpus(signed_in, project, user, experiment):
    prose = _corpus(project, user)
    response = signed_in.get(reverse("experiments:create", args=[project.pk]))
    choices = response.context["form"].fields["dataset"].choices
    assert ("Text corpora (RMT)", [(str(prose.pk), "prose (2 rows)")]) in choices
    response = signed_in.post(reverse("experiments:create", args=[project.pk]), _form_data(
        algorithm="rmt", dataset=str(prose.pk), max_new_tokens=32))
    assert response.status_code == 302, response.context["form"].errors
    created = Experiment.objects.get(name="mid")
    run = run_launch(experiment=created, user=user)
    assert run.config["dataset"] == str(prose.normalized_path)
    assert RunConfig.from_dict(run.config).algorithm == "rmt"


@pytest.mark.parametrize("algorithm, kind, message", [
    ("grpo", "text_corpus", "This is a text corpus, for mid-training: choose a prompt dataset, "
                            "or RMT."),
    ("rmt", "prompts", "RMT trains on unlabelled text: choose a text corpus."),
    ("dpo", "text_corpus", "DPO trains on preference pairs: choose a preference dataset."),
])
def test_a_text_corpus_goes_with_rmt_only(signed_in, project, user, algorithm, kind, message):
    if kind == "text_corpus":
        dataset = _corpus(project, user)
    else:
        dataset = dataset_create(project=project, user=user, name="sums", kind="prompts",
                                 filename="sums.jsonl",
                                 file=io.BytesIO(b'{"prompt": "Compute 1 + 2.", "answer": 3}\n'),
                                 mapping={"prompt": "prompt", "answer": "answer"})
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(algorithm=algorithm, dataset=str(dataset.pk)))
    assert response.status_code == 422
    assert response.context["form"].errors["dataset"] == [message]
    assert not Experiment.objects.filter(name="mid").exists()


def test_a_launch_refuses_a_corpus_for_another_algorithm(project, user, experiment):
    prose = _corpus(project, user)
    experiment.config = {**experiment.config, "dataset": str(prose.pk)}
    experiment.save()
    with pytest.raises(ValidationError, match="is not a prompt dataset of this project"):
        run_launch(experiment=experiment, user=user)
