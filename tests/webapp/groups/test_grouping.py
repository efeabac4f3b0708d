"""Runs put into groups by seed group, chosen settings or tag, and the groups' names."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from webapp.experiments.services import experiment_create
from webapp.groups.grouping import (
    BY_SEED,
    BY_SETTINGS,
    BY_TAG,
    Grouping,
    grouping_parse,
    groups_pick,
    runs_group,
)
from webapp.runs.models import Run
from webapp.runs.services import runs_launch_seeds

pytestmark = pytest.mark.django_db


def names(groups) -> dict[str, list[int]]:
    return {group.name: sorted(run.pk for run in group.runs) for group in groups}


def test_seeds_of_one_config_form_one_group_named_by_the_setting_that_differs(
        experiment, project, user):
    low = runs_launch_seeds(experiment=experiment, user=user, seeds=[1, 2, 3])
    other = experiment_create(project=project, author=user, name="grpo-fast", description="",
                              config={**experiment.config, "learning_rate": 3e-5})
    high = runs_launch_seeds(experiment=other, user=user, seeds=[1, 2])

    groups = runs_group(list(Run.objects.all()), Grouping(by=BY_SEED))

    lr = experiment.config["learning_rate"]
    assert names(groups) == {f"learning_rate={lr}": sorted(r.pk for r in low),
                             "learning_rate=3e-05": sorted(r.pk for r in high)}
    assert [group.n for group in groups] == [3, 2]


def test_a_seed_group_that_nothing_sets_apart_is_named_by_its_experiment(experiment, user):
    runs_launch_seeds(experiment=experiment, user=user, seeds=[4, 5])

    groups = runs_group(list(Run.objects.all()), Grouping(by=BY_SEED))

    assert [group.name for group in groups] == ["grpo-small"]


def test_chosen_settings_group_by_their_values_and_a_missing_one_is_its_own_group(make_run):
    a = make_run({"lr": 1e-6, "beta": 0.04, "seed": 1})
    b = make_run({"lr": 1e-6, "beta": 0.04, "seed": 2})
    c = make_run({"lr": 2e-6, "beta": 0.04, "seed": 1})
    d = make_run({"lr": 2e-6, "seed": 2})
    e = make_run({"beta": 0.04, "seed": 3})

    groups = runs_group([a, b, c, d, e], grouping_parse(BY_SETTINGS, ["lr, beta"]))

    assert names(groups) == {"lr=1e-06, beta=0.04": [a.pk, b.pk], "lr=2e-06, beta=0.04": [c.pk],
                             "lr=2e-06, beta=—": [d.pk], "lr=—, beta=0.04": [e.pk]}


def test_nested_settings_are_named_by_their_dotted_keys(make_run):
    a = make_run({"kl": {"beta": 0.1}, "seed": 1})
    b = make_run({"kl": {"beta": 0.1}, "seed": 2})
    c = make_run({"kl": {"beta": 0.2}, "seed": 1})

    groups = runs_group([a, b, c], grouping_parse("settings", ["kl.beta"]))

    assert names(groups) == {"kl.beta=0.1": [a.pk, b.pk], "kl.beta=0.2": [c.pk]}


def test_a_run_with_two_tags_is_in_both_groups_and_untagged_runs_in_the_dash_group(make_run):
    a = make_run({"seed": 1}, tags=["spo", "paper"])
    b = make_run({"seed": 2}, tags=["spo"])
    c = make_run({"seed": 3})

    groups = runs_group([a, b, c], Grouping(by=BY_TAG))

    assert names(groups) == {"spo": [a.pk, b.pk], "paper": [a.pk], "—": [c.pk]}


def test_a_grouping_that_splits_every_run_apart_says_so(make_run):
    runs = [make_run({"lr": lr, "seed": 1}) for lr in (1e-6, 2e-6, 3e-6)]

    with pytest.raises(ValidationError) as caught:
        runs_group(runs, grouping_parse("settings", ["lr"]))

    assert "puts each of the 3 runs in a group of its own" in caught.value.messages[0]
    assert "Group by fewer settings" in caught.value.messages[0]


def test_an_unknown_grouping_and_settings_without_names_are_refused():
    with pytest.raises(ValidationError, match="Group by one of seed, settings, tag"):
        grouping_parse("colour", [])
    with pytest.raises(ValidationError, match="Name one or more settings"):
        grouping_parse("settings", [" ", ""])
    with pytest.raises(ValidationError, match="at most 8 settings"):
        grouping_parse("settings", [",".join(f"k{i}" for i in range(9))])


def test_group_ids_are_stable_and_pick_groups(make_run):
    runs = [make_run({"lr": lr, "seed": seed}) for lr in (1e-6, 2e-6) for seed in (1, 2)]
    first = runs_group(runs, grouping_parse("settings", ["lr"]))
    again = runs_group(runs, grouping_parse("settings", ["lr"]))
    assert [g.id for g in first] == [g.id for g in again]

    picked = groups_pick(again, [first[1].id, "nonsense"])

    assert [g.name for g in picked] == [first[1].name]
    assert groups_pick(again, ["nonsense"]) == again


def test_at_most_eight_groups_are_picked_the_largest_first(make_run):
    runs = [make_run({"lr": i, "seed": seed}) for i in range(10) for seed in range(1 + i % 2)]
    groups = runs_group(runs, grouping_parse("settings", ["lr"]))

    picked = groups_pick(groups, [])

    assert len(picked) == 8 and all(group.n == 2 for group in picked[:5])
    assert len(groups_pick(groups, [group.id for group in groups])) == 8
