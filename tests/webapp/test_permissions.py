"""Every URL, as every kind of user: outsiders get 404, members get what their role allows.

A new URL pattern fails `test_every_url_is_in_the_matrix` until its row is added here.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from webapp.api.tokens import token_create
from webapp.artifacts.models import Artifact
from webapp.artifacts.storage import artifact_storage
from webapp.datasets.services import dataset_create
from webapp.reviews import services as reviews
from webapp.runs.ingestion import CheckpointSaved, checkpoints_ingest, rollouts_ingest
from webapp.jobs.services import job_template_create
from webapp.runs.models import Rollout
from webapp.runs.services import run_launch
from webapp.teams.models import Membership, Role
from webapp.teams.services import invitation_create

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "viewer", "member", "admin"]
PUBLIC = {"login", "logout", "projects:healthz", "teams:invitation", "password_reset",
          "password_reset_done", "password_reset_confirm", "password_reset_complete"}

READ = {"outsider": 404, "viewer": 200, "member": 200, "admin": 200}
SIGNED_IN = {"outsider": 200, "viewer": 200, "member": 200, "admin": 200}
WRITE_PAGE = {"outsider": 404, "viewer": 403, "member": 200, "admin": 200}
WRITE = {"outsider": 404, "viewer": 403, "member": 302, "admin": 302}
ADMIN = {"outsider": 404, "viewer": 403, "member": 403, "admin": 302}
REVIEW = {"outsider": 404, "viewer": 302, "member": 302, "admin": 302}
AUTHOR = {"outsider": 404, "viewer": 403, "member": 403, "admin": 302}  # admin wrote it
ADMIN_PAGE = {"outsider": 404, "viewer": 403, "member": 403, "admin": 200}

# url name -> (method, kwargs names, data, expected status per role)
MATRIX = {
    "password_change": ("get", [], {}, SIGNED_IN),
    "password_change_done": ("get", [], {}, SIGNED_IN),
    # Staff only: no role in a team opens it.
    "password_links": ("get", [], {}, {"outsider": 404, "viewer": 404, "member": 404,
                                       "admin": 404}),
    "projects:list": ("get", [], {}, SIGNED_IN),
    "projects:detail": ("get", ["project_id"], {}, READ),
    "projects:chart_layout": ("post", ["project_id"], {"reset": "1"}, WRITE),
    "deletion:project": ("get", ["project_id"], {}, ADMIN_PAGE),
    "teams:list": ("get", [], {}, SIGNED_IN),
    "teams:detail": ("get", ["team_id"], {}, READ),
    "teams:invite": ("post", ["team_id"], {"email": "new@example.com", "role": "viewer"}, ADMIN),
    "teams:invitation_revoke": ("post", ["team_id", "invitation_id"], {}, ADMIN),
    "teams:member_role": ("post", ["team_id", "membership_id"], {"role": "member"}, ADMIN),
    "teams:member_remove": ("post", ["team_id", "membership_id"], {}, ADMIN),
    "experiments:create": ("get", ["project_id"], {}, WRITE_PAGE),
    "experiments:detail": ("get", ["experiment_id"], {}, READ),
    "experiments:edit": ("get", ["experiment_id"], {}, WRITE_PAGE),
    "runs:launch": ("post", ["experiment_id"], {}, WRITE),
    "deletion:experiment": ("get", ["experiment_id"], {}, ADMIN_PAGE),
    "experiments:create_evaluation": ("get", ["project_id"], {}, WRITE_PAGE),
    # A training experiment: a member is sent back to it with the reason it cannot evaluate.
    "evaluations:launch": ("post", ["experiment_id"], {"model": "builtin:x"}, WRITE),
    # The world's run is a training run: only evaluation jobs export, so 404 past the access check.
    "evaluations:export": ("get", ["run_id", "fmt"], {},
                               {"outsider": 404, "viewer": 404, "member": 404, "admin": 404}),
    "evaluations:checkpoint_evaluate": ("post", ["checkpoint_id"], {"evaluation": "0"}, WRITE),
    "runs:detail": ("get", ["run_id"], {}, READ),
    "live:events": ("get", ["run_id"], {}, READ),
    "live:metrics": ("get", ["run_id"], {}, READ),
    "live:metrics_csv": ("get", ["run_id"], {}, READ),
    "runs:compare": ("get", ["project_id"], {}, READ),
    "groups:groups": ("get", ["project_id"], {}, READ),
    "groups:series": ("get", ["project_id"], {"metric": "reward/mean"}, READ),
    "groups:statistics": ("get", ["project_id"], {}, READ),
    "runs_table:table": ("get", ["project_id"], {}, READ),
    # Each member keeps their own columns, viewers too.
    "runs_table:columns": ("get", ["project_id"], {}, READ),
    "runs_table:act": ("post", ["project_id"], {"action": "tag", "tag_name": "x", "runs": ["1"]},
                       WRITE),
    "evaluations:leaderboard": ("get", ["project_id"], {}, READ),
    "evaluations:leaderboard_export": ("get", ["project_id", "fmt"], {}, READ),
    "evaluations:compare": ("get", ["project_id"], {}, READ),
    "rollouts:browser": ("get", ["run_id"], {}, READ),
    "artifacts:list": ("get", ["run_id"], {}, READ),
    "artifacts:detail": ("get", ["run_id", "artifact_id"], {}, READ),
    "artifacts:download": ("get", ["run_id", "artifact_id"], {}, READ),
    "artifacts:image": ("get", ["run_id", "artifact_id"], {}, READ),
    "rollouts:prompt_history": ("get", ["run_id", "prompt_id"], {}, READ),
    "runs:cancel": ("post", ["run_id"], {}, WRITE),
    # The admin launched the run: a member may delete only runs of their own.
    "deletion:run": ("get", ["run_id"], {}, ADMIN_PAGE),
    # The run is queued, so a member is sent back to it with the reason it cannot resume.
    "runs:resume": ("post", ["run_id"], {}, WRITE),
    "reviews:comment_create": ("post", ["run_id"], {"body": "looks hacked"}, REVIEW),
    "reviews:comment_delete": ("post", ["comment_id"], {}, AUTHOR),
    "reviews:star": ("post", ["run_id"], {}, REVIEW),
    "reviews:tag_add": ("post", ["run_id"], {"name": "baseline"}, WRITE),
    "reviews:tag_remove": ("post", ["run_id", "tag_id"], {}, WRITE),
    "reviews:notes": ("post", ["run_id"], {"notes": "lr too high"}, WRITE),
    "reviews:rollout": ("get", ["rollout_id"], {}, READ),
    "reviews:annotation_create": ("post", ["rollout_id"], {"label": "correct"}, REVIEW),
    "reviews:annotation_delete": ("post", ["annotation_id"], {}, AUTHOR),
    "reviews:project_review": ("get", ["project_id"], {}, READ),
    "reviews:activity": ("get", ["project_id"], {}, READ),
    "reviews:label_create": ("post", ["team_id"], {"name": "off by one"}, ADMIN),
    "datasets:list": ("get", ["project_id"], {}, READ),
    "datasets:upload": ("get", ["project_id"], {}, WRITE_PAGE),
    # No upload waits under this token in anyone's session: members are sent back to upload.
    "datasets:confirm": ("get", ["project_id", "upload_token"], {}, WRITE),
    "datasets:detail": ("get", ["dataset_id"], {}, READ),
    "datasets:download": ("get", ["dataset_id"], {}, READ),
    "deletion:dataset": ("get", ["dataset_id"], {}, ADMIN_PAGE),
    "projects:settings": ("get", ["project_id"], {}, ADMIN_PAGE),
    "queue:queue": ("get", [], {}, SIGNED_IN),
    "queue:workers": ("get", [], {}, SIGNED_IN),
    # The admin launched the world's run: a member may raise their own runs only.
    "queue:priority": ("post", ["run_id"], {"step": "up"}, AUTHOR),
    "sweeps:list": ("get", ["project_id"], {}, READ),
    "sweeps:create": ("get", ["project_id"], {}, WRITE_PAGE),
    "sweeps:detail": ("get", ["sweep_id"], {}, READ),
    "sweeps:cancel": ("post", ["sweep_id"], {}, WRITE),
    "jobs:list": ("get", ["team_id"], {}, READ),
    "jobs:create": ("get", ["team_id"], {}, ADMIN_PAGE),
    "jobs:examples": ("post", ["team_id"], {}, ADMIN),
    "jobs:detail": ("get", ["template_id"], {}, READ),
    "jobs:edit": ("get", ["template_id"], {}, ADMIN_PAGE),
    "jobs:delete": ("post", ["template_id"], {}, ADMIN),
    "jobs:launch": ("get", ["template_id"], {}, WRITE_PAGE),
    "api_tokens:list": ("get", [], {}, SIGNED_IN),
    # The token is the admin's own: anyone else's is 404, whatever their role.
    "api_tokens:revoke": ("post", ["token_id"], {},
                          {"outsider": 404, "viewer": 404, "member": 404, "admin": 302}),
}


def _url_names(patterns, namespace: str = "") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= _url_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(f"{namespace}{pattern.name}")
    return names


def test_every_url_is_in_the_matrix():
    # The REST API has its own matrix: tests/webapp/api/test_api_permissions.py.
    names = {name for name in _url_names(get_resolver().url_patterns)
             if not name.startswith("api:")}
    assert names == set(MATRIX) | PUBLIC


@pytest.fixture
def world(user, team, project, experiment, member_of, django_user_model, settings, tmp_path):
    """One object of each kind in `team`, whose admin is `user`; and one user per role."""
    target = member_of("viewer", "target")
    invitation, _ = invitation_create(team=team, actor=user, email="x@example.com",
                                      role=Role.VIEWER)
    run = run_launch(experiment=experiment, user=user)
    rollouts_ingest(run_id=run.pk, step=1, items=[{"prompt": "1+1", "completion": "2",
                                                   "reward": 1.0, "prompt_id": "1+1"}])
    rollout = Rollout.objects.get(run=run)
    checkpoints_ingest(run_id=run.pk, checkpoints=[
        CheckpointSaved(step=1, path=str(tmp_path / "checkpoint-1"))])
    comment = reviews.comment_create(run=run, author=user, body="first")
    annotation = reviews.annotation_create(rollout=rollout, author=user, label="wrong answer",
                                           note="")
    tag = reviews.run_tag_add(run=run, actor=user, name="tag")
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "artifacts")}}}
    png = b"\x89PNG\r\n\x1a\n"
    artifact = Artifact.objects.create(run=run, path="plots/a.png", size=len(png),
                                       sha256=hashlib.sha256(png).hexdigest())
    artifact_storage().save(artifact.storage_name, io.BytesIO(png))
    settings.RLAB_DATASET_DIR = tmp_path / "datasets"
    dataset = dataset_create(project=project, user=user, name="sums", kind="prompts",
                             filename="sums.jsonl",
                             file=io.BytesIO(b'{"prompt": "1 + 1?", "answer": 2}\n'),
                             mapping={"prompt": "prompt", "answer": "answer"})
    users = {
        "outsider": django_user_model.objects.create_user("outsider", password="pw-outsider-1"),
        "viewer": member_of("viewer"),
        "member": member_of("member"),
        "admin": user,
    }
    ids = {"project_id": project.pk, "team_id": team.pk, "experiment_id": experiment.pk,
           "run_id": run.pk, "invitation_id": invitation.pk,
           "membership_id": Membership.objects.get(user=target).pk, "rollout_id": rollout.pk,
           "comment_id": comment.pk, "annotation_id": annotation.pk, "tag_id": tag.pk,
           "dataset_id": dataset.pk, "upload_token": "0" * 32, "prompt_id": "1+1", "fmt": "csv",
           "checkpoint_id": run.checkpoints.get().pk, "artifact_id": artifact.pk,
           "token_id": token_create(user=user, name="cli")[0].pk,
           "template_id": job_template_create(team=team, user=user, fields={
               "name": "world", "command": "echo {n}",
               "parameters": [{"name": "n", "type": "int", "default": 1}]}).pk}
    return users, ids


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_access(client, world, name, role):
    users, ids = world
    method, kwarg_names, data, expected = MATRIX[name]
    if "sweep_id" in kwarg_names:
        ids = {**ids, "sweep_id": sweep_of(users["admin"], ids["project_id"])}
    url = reverse(name, kwargs={k: ids[k] for k in kwarg_names})
    if role != "anonymous":
        client.force_login(users[role])
    response = getattr(client, method)(url, data)
    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == expected[role], f"{role} {method.upper()} {url}"


def sweep_of(admin, project_id: int) -> int:
    """A sweep of the world's project, made only for the pages of a sweep."""
    from webapp.projects.models import Project
    from webapp.sweeps.definition import definition_parse
    from webapp.sweeps.services import sweep_create

    definition = definition_parse({
        "experiment": "grpo-small", "name": "world", "method": "grid", "budget": 1,
        "max_concurrent": 1, "objective": {"metric": "reward/mean", "direction": "maximize"},
        "axes": {"beta": {"values": [0.0]}}}, project=Project.objects.get(pk=project_id))
    return sweep_create(definition=definition, user=admin).pk


@pytest.mark.parametrize("role", ["outsider", "viewer"])
def test_htmx_fragments_follow_the_same_rules(client, world, role):
    users, ids = world
    client.force_login(users[role])
    response = client.get(reverse("live:events", args=[ids["run_id"]]), HTTP_HX_REQUEST="true")
    assert response.status_code == READ[role]


def test_public_pages_need_no_login(client, world):
    assert client.get(reverse("login")).status_code == 200
    assert client.get(reverse("projects:healthz")).status_code == 200
    assert client.get(reverse("teams:invitation", args=["not-a-token"])).status_code == 404
