"""The artifact pages on what the real mlflow client logged over HTTP (the MLflow artifact
endpoints of webapp.mlflow_compat): a dict, a text, an image, a table, a file with an odd name
and a pyfunc model, each shown as the run page and the file pages show them."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from tests.webapp.mlflow_compat.test_logged_models import doubler
from webapp.artifacts.models import Artifact
from webapp.runs.models import Run

ODD_NAME = 'odd <img src=x onerror="alert(1)"> é.txt'


@pytest.fixture
def logged(tracking, tmp_path):
    """A run into which the mlflow client logged one file of each kind, and a model."""
    import mlflow

    odd = tmp_path / ODD_NAME
    odd.write_text("odd file")
    with mlflow.start_run() as run:
        mlflow.log_dict({"lr": 1e-6, "funcs": ["a", "b"]}, "config.json")
        mlflow.log_text("hello <b>world</b>", "notes/readme.txt")
        mlflow.log_image(np.full((20, 30, 3), 200, dtype=np.uint8), "plots/grey.png")
        mlflow.log_table({"q": [f"q{i}" for i in range(70)], "score": [i % 7 for i in range(70)]},
                         "eval/table.json")
        mlflow.log_artifact(str(odd), "odd")
        model = mlflow.pyfunc.log_model(name="doubler", python_model=doubler())
    return Run.objects.get(pk=int(run.info.run_id)), model.model_id


def test_the_pages_show_what_the_mlflow_client_logged(client, user, logged):
    run, model_id = logged
    client.force_login(user)
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'id="artifacts"' in page and "config.json" in page and "doubler" in page
    files = {a.path: a for a in Artifact.objects.filter(run=run)}

    def detail(path: str) -> str:
        return client.get(reverse("artifacts:detail", args=[run.pk, files[path].pk])
                          ).content.decode()

    assert "&quot;lr&quot;: 1e-06" in detail("config.json")
    assert "hello &lt;b&gt;world" in detail("notes/readme.txt")
    assert 'id="artifact-image"' in detail("plots/grey.png")
    assert "A table of 70 rows and 2 columns, page 1 of 2" in detail("eval/table.json")
    odd = detail(f"odd/{ODD_NAME}")
    assert "<img src=x" not in odd and "odd file" in odd
    model_files = client.get(reverse("artifacts:list", args=[run.pk]),
                             {"model": model_id}).content.decode()
    assert "MLmodel" in model_files and "python_model.pkl" in model_files
    mlmodel = Artifact.objects.get(logged_model_id=model_id, path="MLmodel")
    assert 'id="artifact-text"' in client.get(
        reverse("artifacts:detail", args=[run.pk, mlmodel.pk])).content.decode()
