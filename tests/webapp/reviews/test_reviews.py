import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from webapp.projects.activity import Verb
from webapp.reviews import services
from webapp.reviews.models import Activity, Annotation, Comment, RunStar
from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.models import Rollout
from webapp.runs.services import run_cancel, run_launch

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(experiment, user):
    return run_launch(experiment=experiment, user=user)


@pytest.fixture
def rollouts(run):
    rollouts_ingest(run_id=run.pk, step=3, items=[
        {"prompt": "Compute 2 + 2.", "completion": text, "reward": reward, "group": 0,
         "sample_index": i} for i, (text, reward) in enumerate([("4", 1.0), ("5", 0.0)])])
    return list(Rollout.objects.filter(run=run).order_by("sample_index"))


def test_launch_comment_and_cancel_appear_in_the_activity_feed(signed_in, run, user):
    services.comment_create(run=run, author=user, body="reward is flat")
    run_cancel(run=run, user=user)
    verbs = list(Activity.objects.order_by("created_at", "id").values_list("verb", flat=True))
    assert verbs == [Verb.LAUNCHED, Verb.COMMENTED, Verb.CANCELLED]
    body = signed_in.get(reverse("reviews:activity", args=[run.experiment.project_id]))
    assert "reward is flat" in body.content.decode()


def test_a_viewer_comments_with_htmx_and_gets_the_comment_list(client, run, member_of):
    viewer = member_of("viewer")
    client.force_login(viewer)
    response = client.post(reverse("reviews:comment_create", args=[run.pk]),
                           {"body": "<b>odd</b> spike at step 40"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="comments"')
    assert "&lt;b&gt;odd&lt;/b&gt; spike" in body
    assert Comment.objects.get().author == viewer


def test_an_empty_comment_is_refused(run, user):
    with pytest.raises(ValidationError):
        services.comment_create(run=run, author=user, body="   ")


def test_only_the_author_deletes_a_comment(run, user, member_of):
    comment = services.comment_create(run=run, author=user, body="mine")
    with pytest.raises(PermissionDenied):
        services.comment_delete(comment=comment, actor=member_of("member"))
    services.comment_delete(comment=comment, actor=user)
    assert not Comment.objects.exists()


def test_annotations_take_builtin_and_team_labels_only(rollouts, user, team):
    services.annotation_create(rollout=rollouts[0], author=user, label="reward hacking",
                               note="echoes the prompt")
    services.label_create(team=team, name="Off  By One")
    services.annotation_create(rollout=rollouts[1], author=user, label="off by one", note="")
    with pytest.raises(ValidationError, match="at most 40"):
        services.label_create(team=team, name="x" * 41)
    with pytest.raises(ValidationError, match="Unknown label"):
        services.annotation_create(rollout=rollouts[1], author=user, label="typo", note="")
    with pytest.raises(ValidationError, match="already labelled"):
        services.annotation_create(rollout=rollouts[0], author=user, label="reward hacking",
                                   note="")
    assert Annotation.objects.count() == 2


def test_the_team_page_shows_its_labels_and_only_admins_the_form_that_adds_one(
        client, team, user, member_of):
    services.label_create(team=team, name="Off  By One")
    url = reverse("teams:detail", args=[team.pk])
    add_label = reverse("reviews:label_create", args=[team.pk])
    client.force_login(user)  # the team's admin
    admin_page = client.get(url).content.decode()
    assert 'class="label-chip">off by one<' in admin_page
    assert 'class="label-chip">reward hacking<' in admin_page  # a built-in label
    assert f'action="{add_label}"' in admin_page and "csrfmiddlewaretoken" in admin_page
    client.force_login(member_of("member"))
    member_page = client.get(url).content.decode()
    assert 'class="label-chip">off by one<' in member_page
    assert f'action="{add_label}"' not in member_page


def test_annotating_from_the_rollout_page(signed_in, rollouts):
    url = reverse("reviews:annotation_create", args=[rollouts[1].pk])
    response = signed_in.post(url, {"label": "wrong answer", "note": "2+2 is not 5"},
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "2+2 is not 5" in response.content.decode()
    bad = signed_in.post(url, {"label": "nonsense"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422
    assert "Select a valid choice" in bad.content.decode()


def test_review_page_filters_by_label_run_and_author(signed_in, client, rollouts, user,
                                                     member_of, experiment):
    other_run = run_launch(experiment=experiment, user=user)
    rollouts_ingest(run_id=other_run.pk, step=1, items=[
        {"prompt": "Compute 1 + 1.", "completion": "two", "reward": 0.0}])
    reviewer = member_of("viewer")
    services.annotation_create(rollout=rollouts[0], author=user, label="correct", note="n1")
    services.annotation_create(rollout=rollouts[1], author=reviewer, label="wrong answer",
                               note="n2")
    services.annotation_create(rollout=Rollout.objects.get(run=other_run), author=user,
                               label="format error", note="n3")
    url = reverse("reviews:project_review", args=[experiment.project_id])

    def notes(**params):
        response = signed_in.get(url, params)
        return {a.note for a in response.context["annotations"]}

    assert notes() == {"n1", "n2", "n3"}
    assert notes(label="wrong answer") == {"n2"}
    assert notes(run=str(other_run.pk)) == {"n3"}
    assert notes(author=str(reviewer.pk)) == {"n2"}
    assert notes(author=str(user.pk), run=str(rollouts[0].run_id)) == {"n1"}


def test_star_toggles_and_tags_and_notes_are_kept(signed_in, run):
    star = reverse("reviews:star", args=[run.pk])
    signed_in.post(star)
    assert RunStar.objects.filter(run=run).count() == 1
    signed_in.post(star)
    assert RunStar.objects.filter(run=run).count() == 0
    signed_in.post(reverse("reviews:tag_add", args=[run.pk]), {"name": " Baseline/2 "})
    assert list(run.tags.values_list("name", flat=True)) == ["baseline/2"]
    assert "baseline/2" in signed_in.get(run.get_absolute_url()).content.decode()
    signed_in.post(reverse("reviews:tag_remove", args=[run.pk, run.tags.get().pk]))
    assert not run.tags.exists()
    signed_in.post(reverse("reviews:notes", args=[run.pk]), {"notes": "lr 2e-5 is best"})
    run.refresh_from_db()
    assert run.notes == "lr 2e-5 is best"


def test_viewers_see_no_cancel_tag_or_notes_controls(client, run, member_of):
    client.force_login(member_of("viewer"))
    body = client.get(run.get_absolute_url()).content.decode()
    assert 'id="cancel"' not in body and 'id="tag-name"' not in body
    assert 'id="star"' in body and 'id="comment-submit"' in body


def test_the_rollout_page_shows_tokens_with_their_values(signed_in, run):
    rollouts_ingest(run_id=run.pk, step=1, items=[{
        "prompt": "1+1", "completion": "<2>", "reward": 1.0,
        "tokens": {"text": ["<", "2", ">"], "logprob": [-0.01, -0.5, -4.0],
                   "entropy": [0.1, 0.7, 2.5], "kl": [0.0, 0.01, 0.2],
                   "advantage": [0.5, 0.25, -1.0]}}])
    rollout = Rollout.objects.get(run=run)
    body = signed_in.get(reverse("reviews:rollout", args=[rollout.pk])).content.decode()
    assert ('class="tok shade-0" title="log-prob -0.0100 · entropy 0.1000 · advantage 0.5000 · '
            'KL to the reference 0.0000">&lt;') in body
    assert 'class="tok shade-4"' in body and ">&gt;</span>" in body
    assert "advantage -1.0000" in body


def test_a_rollout_logged_with_one_advantage_shows_it_on_every_token(signed_in, run):
    rollouts_ingest(run_id=run.pk, step=1, items=[{
        "prompt": "1+1", "completion": "2!", "reward": 1.0,
        "tokens": {"text": ["2", "!"], "logprob": [-0.1, -0.2], "entropy": [0.1, 0.2],
                   "advantage": 0.7}}])
    rollout = Rollout.objects.get(run=run)
    body = signed_in.get(reverse("reviews:rollout", args=[rollout.pk])).content.decode()
    assert body.count("advantage 0.700") == 2


def test_a_viewer_who_stars_gets_no_tag_or_notes_controls_back(client, run, member_of):
    client.force_login(member_of("viewer"))
    body = client.post(reverse("reviews:star", args=[run.pk]),
                       HTTP_HX_REQUEST="true").content.decode()
    assert "Starred" in body
    assert 'id="tag-name"' not in body and "Save notes" not in body
