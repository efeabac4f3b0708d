import doctest

import pytest
from django.utils import timezone

from webapp.runs import ingestion, selectors, services
from webapp.runs.templatetags import rlab


def test_doctests_pass():
    for module in (selectors, rlab):
        assert doctest.testmod(module).failed == 0


@pytest.mark.django_db
def test_series_after_a_step_returns_only_newer_points(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=s, value=float(s), wall_time=now)
        for s in range(1, 6) for key in ("reward/mean", "zeta/custom")])
    assert selectors.metric_keys(run) == ["reward/mean", "zeta/custom"]
    series = selectors.metric_series(run, ["reward/mean"], start=4).series
    assert series["reward/mean"][:2] == [[4, 5], [4.0, 5.0]]
