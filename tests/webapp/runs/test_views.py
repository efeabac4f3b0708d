import re

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.runs import ingestion, services
from webapp.runs.models import RunStatus

pytestmark = pytest.mark.django_db

PAYLOAD = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def run(experiment, user):
    return services.run_launch(experiment=experiment, user=user)


def test_run_page_requires_login(client, run):
    response = client.get(reverse("runs:detail", args=[run.pk]))
    assert response.status_code == 302


def test_run_page_shows_status_progress_and_cancel(signed_in, run):
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'id="run-status"' in body and "queued" in body
    assert "<progress" in body
    assert 'id="cancel"' in body
    # one event stream updates the page, starting after what it shows
    assert re.search(r'sse-connect="/runs/\d+/events/\?last_event_id=\d+\.\d+\.\d+\.\d+"',
                     body)
    assert 'hx-trigger="every' not in body  # no polling


def test_finished_run_page_has_no_event_stream(signed_in, run):
    services.run_claim(run_id=run.pk, worker="w")
    services.run_fail(run_id=run.pk, error_message="Model not found: /nope")
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "sse-connect" not in body
    assert "Model not found: /nope" in body
    assert 'id="cancel"' not in body


def test_metrics_json_returns_series_after_a_step(signed_in, run):
    now = timezone.now()
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key="reward/mean", step=s, value=s * 0.1, wall_time=now)
        for s in (1, 2, 3)])
    data = signed_in.get(reverse("live:metrics", args=[run.pk]), {"after": 1}).json()
    assert data["keys"] == ["reward/mean"]
    assert data["series"]["reward/mean"][:2] == [[2, 3], [0.2, pytest.approx(0.3)]]
    assert data["active"] is True


def test_cancel_marks_the_run_cancelled(signed_in, run):
    response = signed_in.post(reverse("runs:cancel", args=[run.pk]), HTTP_HX_REQUEST="true")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "cancelled" in response.content.decode()


def test_cancel_needs_post(signed_in, run):
    assert signed_in.get(reverse("runs:cancel", args=[run.pk])).status_code == 405


def test_model_output_is_escaped(signed_in, run):
    ingestion.rollouts_ingest(run_id=run.pk, step=1, items=[{
        "prompt": PAYLOAD, "completion": PAYLOAD, "reward": 0.0, "group": 0,
        "sample_index": 0}])
    ingestion.logs_append(run_id=run.pk, lines=[(timezone.now(), "info", "trainer", PAYLOAD)])
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in body


def test_unknown_run_is_404(signed_in):
    assert signed_in.get(reverse("runs:detail", args=[424242])).status_code == 404


def test_run_page_lists_checkpoints_with_their_size_and_marks_deleted_ones(signed_in, run,
                                                                            tmp_path):
    kept = tmp_path / "run-1" / "checkpoint-4"
    kept.mkdir(parents=True)
    (kept / "model.safetensors").write_bytes(b"\0" * 1536)
    (kept / "config.json").write_bytes(b"{}" * 256)
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=2, path=str(tmp_path / "run-1" / "checkpoint-2")),
        ingestion.CheckpointSaved(step=4, path=str(kept), final=True)])
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    section = body[body.index('id="checkpoints"'):body.index('id="logs"')]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", section, re.S)[1:]
    assert len(rows) == 2
    assert "4" in rows[0] and "final" in rows[0] and str(kept) in rows[0]
    assert "2.0\xa0KB" in rows[0]  # 1536 + 512 bytes
    assert "checkpoint-2" in rows[1] and "deleted" in rows[1] and "final" not in rows[1]


def test_run_page_without_checkpoints_says_when_they_come(signed_in, run):
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "No checkpoints yet" in body


def test_checkpoint_path_is_escaped(signed_in, run):
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=1, path=f"/runs/{PAYLOAD}")])
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in body


def _checkpoint_on_disk(run, step: int, folder) -> str:
    path = folder / f"run-{run.pk}" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=step, path=str(path))])
    return str(path)


def test_cancelling_a_run_with_a_checkpoint_offers_to_resume_it(signed_in, run, tmp_path):
    services.run_claim(run_id=run.pk, worker="w")
    _checkpoint_on_disk(run, 2, tmp_path)
    body = signed_in.post(reverse("runs:cancel", args=[run.pk]),
                          HTTP_HX_REQUEST="true").content.decode()
    assert 'id="resume"' in body and "Resume from step 2" in body
    assert f'hx-post="{reverse("runs:resume", args=[run.pk])}"' in body


def test_a_running_run_offers_no_resume(signed_in, run, tmp_path):
    services.run_claim(run_id=run.pk, worker="w")
    _checkpoint_on_disk(run, 2, tmp_path)
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'id="resume"' not in body


def test_a_viewer_is_not_offered_to_resume(client, member_of, run, tmp_path):
    services.run_cancel(run=run, user=run.launched_by)
    _checkpoint_on_disk(run, 2, tmp_path)
    client.force_login(member_of("viewer"))
    body = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert 'id="run-status"' in body and 'id="resume"' not in body


def test_resume_opens_the_new_run_which_links_back_to_its_checkpoint(signed_in, run, tmp_path):
    services.run_cancel(run=run, user=run.launched_by)
    _checkpoint_on_disk(run, 2, tmp_path)
    response = signed_in.post(reverse("runs:resume", args=[run.pk]))
    resumed = run.experiment.runs.get(number=2)
    assert response.status_code == 302 and response["Location"] == resumed.get_absolute_url()
    body = signed_in.get(response["Location"]).content.decode()
    assert re.search(rf'resumed from <a href="{run.get_absolute_url()}">#1</a> at step 2', body)


def test_resume_over_htmx_sends_the_browser_to_the_new_run(signed_in, run, tmp_path):
    services.run_cancel(run=run, user=run.launched_by)
    _checkpoint_on_disk(run, 2, tmp_path)
    response = signed_in.post(reverse("runs:resume", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == run.experiment.runs.get(number=2).get_absolute_url()


def test_a_refused_resume_stays_on_the_run_and_says_why(signed_in, run):
    services.run_cancel(run=run, user=run.launched_by)
    response = signed_in.post(reverse("runs:resume", args=[run.pk]), follow=True)
    assert response.redirect_chain == [(run.get_absolute_url(), 302)]
    assert "saved no checkpoint to resume from" in response.content.decode()
    assert run.experiment.runs.count() == 1


def test_resume_needs_post(signed_in, run):
    assert signed_in.get(reverse("runs:resume", args=[run.pk])).status_code == 405


def test_status_panel_shows_throughput_and_peak_memory(signed_in, run):
    now = timezone.now()
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=1, value=value, wall_time=now)
        for key, value in (("perf/tokens_per_s", 123.45), ("time/step_s", 2.5),
                           ("perf/peak_memory_gb", 3.25))])
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    throughput = body[body.index('id="run-throughput"'):]
    assert "123.5 tokens/s" in throughput[:200] and "2.5 s" in throughput[:200]
    assert "3.3 GiB" in body[body.index('id="run-memory"'):][:120]
