import pytest

from training.spec.config import RunConfig


@pytest.fixture
def base(project, user):
    """A training experiment to sweep."""
    from webapp.experiments.services import experiment_create

    config = RunConfig(max_steps=3, prompts_per_step=2, group_size=2).to_dict()
    return experiment_create(project=project, author=user, name="grpo-base", description="",
                             config=config)


@pytest.fixture
def definition(base):
    """definition(**changes) -> a valid sweep definition (a dict, as YAML gives it)."""
    def make(**changes):
        data = {"experiment": base.name, "name": "lr sweep", "method": "grid",
                "objective": {"metric": "reward/mean", "direction": "maximize"},
                "budget": 4, "max_concurrent": 2,
                "axes": {"learning_rate": {"values": [1e-6, 1e-5]},
                         "beta": {"values": [0.0, 0.04]}}}
        data.update(changes)
        return data
    return make
