import doctest

import pytest
from django.utils import timezone

from webapp.runs import selectors, services
from webapp.runs.templatetags import rlab


def test_doctests_pass():
    for module in (selectors, rlab):
        assert doctest.testmod(module).failed == 0


def test_downsampling_keeps_spikes_and_bounds_the_size():
    steps = list(range(100_000))
    values = [0.0] * 100_000
    values[77_777] = 50.0
    values[12_345] = -50.0
    out_steps, out_values = selectors.downsample_minmax(steps, values, 2000)
    assert len(out_steps) <= 2000
    assert 50.0 in out_values and -50.0 in out_values
    assert out_steps == sorted(out_steps)


@pytest.mark.django_db
def test_series_after_a_step_returns_only_newer_points(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    services.metrics_ingest(run_id=run.pk, points=[
        services.MetricSample(key=key, step=s, value=float(s), wall_time=now)
        for s in range(1, 6) for key in ("reward/mean", "zeta/custom")])
    assert selectors.metric_keys(run) == ["reward/mean", "zeta/custom"]
    series = selectors.metric_series(run, ["reward/mean"], after_step=3)
    assert series == {"reward/mean": [[4, 5], [4.0, 5.0]]}
