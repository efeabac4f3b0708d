"""A sweep's definition is checked whole before anything is created: each bad input gets its own
message, at its place."""

from __future__ import annotations

import pytest

from webapp.experiments.services import experiment_create
from webapp.runs.models import Run
from webapp.sweeps.definition import DefinitionError, definition_parse
from webapp.sweeps.models import Sweep

pytestmark = pytest.mark.django_db


def errors_of(data, project) -> dict[str, str]:
    with pytest.raises(DefinitionError) as caught:
        definition_parse(data, project=project)
    assert not Sweep.objects.exists() and not Run.objects.exists()
    return caught.value.errors


def test_a_good_definition_parses_with_the_base_config_and_typed_values(definition, project,
                                                                       base):
    parsed = definition_parse(definition(seeds=[1, 2], budget=8), project=project)
    assert parsed.experiment == base
    assert parsed.base_config["max_steps"] == 3
    assert parsed.axes == {"learning_rate": {"values": [1e-6, 1e-5]},
                           "beta": {"values": [0.0, 0.04]}}
    assert parsed.trials == 4 and parsed.seeds == [1, 2]


def test_values_given_as_text_take_the_settings_type(definition, project):
    parsed = definition_parse(definition(axes={"learning_rate": {"values": ["1e-6", "2e-6"]},
                                               "max_steps": {"values": ["2", 4]}}),
                              project=project)
    assert parsed.axes["learning_rate"]["values"] == [1e-6, 2e-6]
    assert parsed.axes["max_steps"]["values"] == [2, 4]


def test_an_empty_grid_is_refused(definition, project):
    errors = errors_of(definition(axes={"beta": {"values": []}}), project)
    assert errors == {"axes.beta": "values: the list is empty; give at least one value"}


def test_no_axes_at_all_is_refused(definition, project):
    assert "give at least one axis" in errors_of(definition(axes={}), project)["axes"]


def test_an_unknown_setting_is_refused(definition, project):
    errors = errors_of(definition(axes={"learning_rat": {"values": [1e-5]}}), project)
    assert errors == {"axes.learning_rat": "unknown setting"}


def test_a_setting_of_another_algorithm_is_named_so(definition, project):
    errors = errors_of(definition(axes={"spo_half_life": {"values": [0.06]}}), project)
    assert errors == {"axes.spo_half_life": "a setting of another algorithm than grpo"}


def test_a_value_out_of_the_settings_bounds_is_refused(definition, project):
    errors = errors_of(definition(axes={"beta": {"values": [0.0, 11]}}), project)
    assert errors == {"axes.beta": "value 11: must be at most 10"}


def test_a_value_outside_the_settings_choices_is_refused(definition, project):
    errors = errors_of(definition(axes={"loss_type": {"values": ["grpo", "mystery"]}}), project)
    assert errors["axes.loss_type"].startswith("value 'mystery': must be one of: ")


def test_a_value_of_the_wrong_type_is_refused(definition, project):
    errors = errors_of(definition(axes={"max_steps": {"values": [2.5]}}), project)
    assert errors == {"axes.max_steps": "value 2.5: expected a whole number, got 2.5"}


def test_a_range_with_low_not_below_high_is_refused(definition, project):
    errors = errors_of(definition(method="random", axes={"epsilon": {"uniform": [0.3, 0.1]}}),
                       project)
    assert errors == {"axes.epsilon": "uniform: low (0.3) must be below high (0.1)"}


def test_a_log_range_from_zero_is_refused(definition, project):
    errors = errors_of(definition(method="random", axes={"beta": {"log_uniform": [0, 1]}}),
                       project)
    assert errors == {"axes.beta": "log_uniform: low (0) must be above 0 on a log scale"}


def test_a_range_end_out_of_the_settings_bounds_is_refused(definition, project):
    errors = errors_of(definition(method="tpe",
                                  axes={"learning_rate": {"log_uniform": [1e-7, 1.0]}}), project)
    assert errors == {"axes.learning_rate": "log_uniform: high 1.0: must be at most 0.01"}


def test_a_range_of_a_text_setting_is_refused(definition, project):
    errors = errors_of(definition(method="random", axes={"loss_type": {"uniform": [0, 1]}}),
                       project)
    assert "is not a number; list its values instead" in errors["axes.loss_type"]


def test_a_grid_of_ranges_is_refused(definition, project):
    errors = errors_of(definition(axes={"epsilon": {"uniform": [0.1, 0.3]}}), project)
    assert "a grid takes listed values only" in errors["axes.epsilon"]


def test_a_budget_over_the_maximum_is_refused(definition, project, settings):
    settings.RLAB_SWEEP_MAX_RUNS = 10
    errors = errors_of(definition(budget=11), project)
    assert errors == {"budget": "at most 10 runs (RLAB_SWEEP_MAX_RUNS)"}


def test_a_grid_larger_than_the_budget_says_by_how_much(definition, project):
    errors = errors_of(definition(budget=6, seeds=[1, 2]), project)
    assert errors == {"budget": "the grid has 4 combinations × 2 seeds = 8 runs, over the "
                                "budget of 6: raise the budget or list fewer values"}


def test_seeds_and_a_seed_axis_at_once_are_refused(definition, project):
    errors = errors_of(definition(seeds=[1, 2], budget=8,
                                  axes={"seed": {"values": [3, 4]}}), project)
    assert errors["seeds"] == ("the seed is an axis already: give seeds, or a seed axis, not "
                               "both")


def test_a_seed_given_twice_is_refused(definition, project):
    assert errors_of(definition(seeds=[1, 1]), project) == {
        "seeds": "each seed once: 1 given twice"}


def test_the_pruner_with_seeds_is_refused(definition, project):
    errors = errors_of(definition(pruner="median", seeds=[1, 2], budget=8), project)
    assert "drop the seeds or the pruner" in errors["pruner"]


def test_settings_that_clash_in_a_trial_are_refused_naming_the_trial(definition, project):
    errors = errors_of(definition(axes={"beta": {"values": [0.04]},
                                        "reference": {"values": ["none"]}}, budget=1), project)
    assert errors["axes.reference"] == (
        "the trial beta=0.04, reference='none' cannot run: reference: β > 0 needs a reference "
        "policy to measure the KL against")


def test_an_evaluation_cannot_be_swept(definition, project, user):
    from webapp.experiments.models import ExperimentKind

    experiment_create(project=project, author=user, name="eval", description="",
                      config={"task": "arithmetic"}, kind=ExperimentKind.EVALUATION)
    errors = errors_of(definition(experiment="eval"), project)
    assert "a sweep launches training runs" in errors["experiment"]


def test_another_projects_experiment_is_not_found(definition, project, base, user):
    from webapp.projects.services import project_create

    other = project_create(team=project.team, name="Other", description="", user=user)
    errors = errors_of(definition(experiment=base.pk), other)
    assert errors == {"experiment": f"this project has no experiment {base.pk}"}


def test_every_problem_is_reported_at_once(definition, project):
    errors = errors_of(definition(name="", method="bayes", budget=0, max_concurrent="two",
                                  objective={"metric": ""}, surprise=1), project)
    assert set(errors) == {"name", "method", "budget", "max_concurrent", "objective.metric",
                           "objective.direction", "surprise"}


def test_a_name_taken_in_the_project_is_refused(definition, project, user):
    from webapp.sweeps.services import sweep_create

    sweep_create(definition=definition_parse(definition(), project=project), user=user)
    with pytest.raises(DefinitionError) as caught:
        definition_parse(definition(), project=project)
    assert caught.value.errors == {"name": "this project has a sweep named 'lr sweep' already"}
