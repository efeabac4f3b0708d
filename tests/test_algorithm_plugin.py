"""An algorithm added from outside rlab's files, registered in this test only: the experiment
form, the config checks and a training run pick it up with no other file touched."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from django.urls import reverse

from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.loops.train import Outcome, train
from training.spec.algorithms import AlgorithmSpec, register, unregister
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter
from training.spec.settings import Settings, setting
from webapp.experiments.models import Experiment


@dataclass(frozen=True)
class SignSettings(Settings):
    sign_scale: float = setting(1.0, "c: every advantage is c · sign(r − the group's mean).",
                                label="Sign scale c", section="algorithm", min=0.0, max=10.0)


class SignAdvantages(Algorithm):
    """Â_i = c · sign(r_i − mean(r_1..r_G)): only whether a completion beat its group counts."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.updates = 0

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        grouped = rewards.view(-1, self.config.group_size)  # (B, G)
        centred = grouped - grouped.mean(dim=1, keepdim=True)  # (B, G)
        return (self.settings.sign_scale * torch.sign(centred)).reshape(-1)  # (B*G,)

    def after_update(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        self.updates += 1
        return {"sign/updates": float(self.updates)}

    def state_dict(self):
        return {"sign": {"updates": self.updates}}, {}

    def load_state_dict(self, state, tensors):
        self.updates = state["sign"]["updates"]


@pytest.fixture
def sign_algorithm():
    register(AlgorithmSpec("sign", "Sign: c · sign(r − the group's mean)", SignAdvantages,
                           SignSettings, min_group_size=2))
    yield
    unregister("sign")


def test_the_config_checks_take_its_settings_and_bounds(sign_algorithm):
    config = RunConfig.from_dict({"algorithm": "sign", "sign_scale": 2.5})
    assert config.algorithm_settings == SignSettings(sign_scale=2.5)
    assert config.to_dict()["sign_scale"] == 2.5
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "sign", "sign_scale": 11})
    assert bad.value.errors == {"sign_scale": "must be at most 10"}
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "sign", "group_size": 1})
    assert bad.value.errors == {"group_size": "SIGN compares completions of the same prompt: "
                                              "the group size must be at least 2"}
    # Another algorithm's run ignores the setting (stored configs carry every algorithm's).
    assert "sign_scale" not in RunConfig.from_dict({"sign_scale": 3.0}).to_dict()


def test_without_it_the_algorithm_is_unknown():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "sign"})
    assert "must be one of" in bad.value.errors["algorithm"]


@pytest.mark.django_db
def test_the_form_offers_it_and_saves_its_settings(sign_algorithm, signed_in, project):
    url = reverse("experiments:create", args=[project.pk])
    page = signed_in.get(url).content.decode()
    assert '<option value="sign">' in page
    swapped = signed_in.get(url, {"algorithm": "sign"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="algorithm-settings"' in swapped and 'name="sign_scale"' in swapped
    assert "<form" not in swapped  # only the algorithm's own settings, swapped in place
    data = {"name": "signs", "description": "", **RunConfig().to_dict(), "algorithm": "sign",
            "sign_scale": "12"}
    assert signed_in.post(url, data).status_code == 422  # above its bound: not saved
    assert not Experiment.objects.exists()
    response = signed_in.post(url, {**data, "sign_scale": "3"})
    assert response.status_code == 302
    config = Experiment.objects.get().config
    assert config["algorithm"] == "sign" and config["sign_scale"] == 3.0
    assert "scale_rewards" not in config  # GRPO's own setting is not this run's


def test_a_two_step_run_trains_with_it(sign_algorithm, tiny_model):
    config = RunConfig.from_dict({
        "algorithm": "sign", "sign_scale": 2.0, "model": str(tiny_model), "max_steps": 2,
        "prompts_per_step": 2, "group_size": 3, "max_new_tokens": 6, "micro_batch_size": 4,
        "rollouts_logged_per_step": 6, "rollout_backend": "transformers"}, paths=True)
    reporter = ListReporter()
    assert train(config, reporter) == Outcome.COMPLETED
    metrics = [event["values"] for event in reporter.of_kind("metrics")]
    assert [values["sign/updates"] for values in metrics] == [1.0, 2.0]
    advantages = {item["advantage"] for event in reporter.of_kind("rollouts")
                  for item in event["items"]}
    assert advantages <= {-2.0, 0.0, 2.0}
