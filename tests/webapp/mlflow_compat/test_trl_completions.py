"""TRL's GRPOTrainer, as a user runs it: a conversational dataset, report_to="mlflow" (so MLflow
ends the run when training ends) with HF_MLFLOW_LOG_ARTIFACTS=1 (each checkpoint logged as a
model) and log_completions=True. Its checkpoint becomes one that rlab evaluates; its completions
file is then imported through the API into that ended run, so that the run's metrics,
checkpoint and rollouts are one run's; the conversation shows as a chat, every reward
function's column is a reward, and the rows no function scored are marked, not refused."""

from __future__ import annotations

from pathlib import Path

import requests
from django.urls import reverse

from webapp.experiments.models import Experiment
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, RunStatus

QUESTIONS = ["What is 2 + 3?", "What is 4 * 5?"]
SYSTEM = "Answer with a number."


# Both reward functions score the first question's completions only (None, which TRL logs as
# NaN, for the second's): TRL trains on, and logs, such rows anyway.


def mentions_a_digit(completions, prompts, **kwargs) -> list[float | None]:
    return [float(any(ch.isdigit() for ch in c[0]["content"]))
            if p[-1]["content"] == QUESTIONS[0] else None for c, p in zip(completions, prompts)]


def brevity(completions, prompts, **kwargs) -> list[float | None]:
    return [-len(c[0]["content"]) / 100 if p[-1]["content"] == QUESTIONS[0] else None
            for c, p in zip(completions, prompts)]


def test_trl_completions_of_a_chat_import_into_the_ended_mlflow_run(
        tracking, web, token, project, tiny_model, tmp_path, monkeypatch, signed_in):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "trl-chat")
    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "1")
    dataset = Dataset.from_list([{"prompt": [{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": question}]}
                                 for question in QUESTIONS])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), run_name="chat-grpo", max_steps=1,
                      per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=6, learning_rate=1e-5, logging_steps=1,
                      log_completions=True, save_strategy="steps", save_steps=1,
                      report_to=["mlflow"], use_cpu=True, disable_tqdm=True, seed=0)
    GRPOTrainer(model=str(tiny_model), args=args, train_dataset=dataset,
                reward_funcs=[mentions_a_digit, brevity]).train()
    run = Experiment.objects.get(project=project, name="trl-chat").runs.get()
    assert run.status == RunStatus.SUCCEEDED  # MLflow ended it
    logged = set(MetricPoint.objects.filter(run=run).values_list("key", flat=True))
    assert {"reward", "rewards/mentions_a_digit/mean", "rewards/brevity/mean"} <= logged
    # The checkpoint transformers logged as a model: one that rlab can load and evaluate.
    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.step == 1
    assert (Path(checkpoint.path) / "config.json").is_file()
    [completions] = (Path(args.output_dir) / "completions").glob("completions_*.parquet")

    response = requests.post(f"{web}/api/runs/{run.pk}/rollouts/import",
                             data=completions.read_bytes(), timeout=60,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/octet-stream"})

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 4, "stored": 4, "steps": 1, "unscored": 2,
                               "left_out": []}
    rollouts = list(Rollout.objects.filter(run=run).order_by("group", "sample_index"))
    assert [(r.group, r.sample_index) for r in rollouts] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for rollout in rollouts:
        question = QUESTIONS[0] if QUESTIONS[0] in rollout.prompt else QUESTIONS[1]
        assert rollout.extra["prompt_messages"] == [{"role": "system", "content": SYSTEM},
                                                    {"role": "user", "content": question}]
        assert rollout.prompt == f"system: {SYSTEM}\n\nuser: {question}"
        assert rollout.completion and not rollout.completion.startswith("[{")
        if question == QUESTIONS[0]:
            assert set(rollout.rewards) == {"mentions_a_digit", "brevity"}
            assert rollout.reward == sum(rollout.rewards.values())
            assert "unscored" not in rollout.extra
        else:
            assert rollout.rewards == {} and rollout.reward == 0.0
            assert "NaN" in rollout.extra["unscored"]
    page = signed_in.get(reverse("rollouts:browser", args=[run.pk])).content.decode()
    assert page.count('<span class="chat-role">user</span>') == 2
    assert page.count("no score</span>") == 2
