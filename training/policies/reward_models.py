"""Learned reward models: sequence classifiers with one score, alone or as an ensemble.

Each model m scores a completion, r_m; the ensemble of M models combines them into one reward,
as in Coste et al. 2024 ("Reward Model Ensembles Help Mitigate Overoptimization"):

    mean:         r = (1/M) Σ_m r_m
    min:          r = min_m r_m                          (WCO, worst-case optimisation)
    uwo:          r = mean − λ·σ²                         (UWO, uncertainty-weighted optimisation)
    uncertainty:  r = mean − λ·σ                          (a variant in the units of the scores)

    σ² = (1/M) Σ_m (r_m − mean)²

The paper's UWO penalises the variance across the ensemble; `uncertainty` penalises its std,
which keeps λ in reward units. σ is the population std (divided by M, not M − 1), so both are
defined for one model, where they are 0 and the reward is the model's own score.

A model reads the prompt and completion as a chat (user prompt, assistant completion) when its
tokenizer has a chat template, else as "prompt\\n\\ncompletion", and its score is the head's output
at the last token that is not padding, as transformers' sequence classifiers pool it, so the way
the model was trained is the way it is read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
)

from training.spec.errors import described
from training.policies.loading import ModelNotFound, resolve_model

RewardFunction = Callable[..., list[float]]

_COMBINERS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "mean": lambda scores, lam: scores.mean(dim=0),
    "min": lambda scores, lam: scores.min(dim=0).values,
    "uwo": lambda scores, lam: scores.mean(dim=0) - lam * scores.var(dim=0, correction=0),
    "uncertainty": lambda scores, lam: scores.mean(dim=0) - lam * scores.std(dim=0, correction=0),
}


class NotARewardModel(ModelNotFound):
    """The reference loads, but not as a sequence classifier with a single score."""


def combine(scores: torch.Tensor, how: str, lam: float = 1.0) -> torch.Tensor:
    """Combine the scores (M, N) of M models for N completions into one reward each (N,).

    >>> scores = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    >>> combine(scores, "mean").tolist(), combine(scores, "min").tolist()
    ([2.0, 0.0], [1.0, 0.0])
    >>> combine(scores, "uncertainty", lam=0.5).tolist(), combine(scores, "uwo", lam=0.5).tolist()
    ([1.5, 0.0], [1.5, 0.0])
    >>> combine(torch.tensor([[0.0], [4.0]]), "uwo", lam=0.5).tolist()
    [0.0]
    """
    if how not in _COMBINERS:
        raise ValueError(f"unknown reward ensemble {how!r}; known: {', '.join(_COMBINERS)}")
    return _COMBINERS[how](scores, lam)


class RewardModelEnsemble:
    """M reward models on one device, scoring (prompt, completion) pairs in batches."""

    def __init__(self, refs: list[str], *, device: str | torch.device,
                 dtype: torch.dtype = torch.float32, how: str = "mean", lam: float = 1.0,
                 batch_size: int = 16):
        if not refs:
            raise ValueError("a reward model ensemble needs at least one model")
        if how not in _COMBINERS:
            raise ValueError(f"unknown reward ensemble {how!r}; known: {', '.join(_COMBINERS)}")
        self.refs = list(refs)
        self.device = torch.device(device)
        self.how, self.lam, self.batch_size = how, lam, batch_size
        self.models = []
        self.tokenizers = []
        for ref in self.refs:
            model, tokenizer = _load_reward_model(ref, dtype=dtype)
            self.models.append(model.to(self.device))
            self.tokenizers.append(tokenizer)

    def score(self, prompts: list[str], completions: list[str],
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The combined reward (N,) and every model's score (M, N), in fp32 on the CPU."""
        per_model = torch.stack([self._score_with(model, tokenizer, prompts, completions)
                                 for model, tokenizer in zip(self.models, self.tokenizers)])
        return combine(per_model, self.how, self.lam), per_model

    def _score_with(self, model, tokenizer, prompts: list[str], completions: list[str],
                    ) -> torch.Tensor:
        pad_id = model.config.get_text_config().pad_token_id
        limit = _max_length(model, tokenizer)
        # Keep the end when a pair is too long: the score is read at the last token.
        sequences = [ids[-limit:] for ids in _token_ids(tokenizer, prompts, completions)]
        # Longest first: similar lengths share a batch, so there is less padding to compute.
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        scores = torch.zeros(len(sequences))
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                width = len(sequences[rows[0]])
                # Right padding: a real token's position and what it attends to are the same
                # as without padding.
                input_ids = torch.full((len(rows), width), pad_id)  # (n, L)
                attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (n, L)
                for k, row in enumerate(rows):
                    ids = sequences[row]
                    input_ids[k, :len(ids)] = torch.tensor(ids)
                    attention_mask[k, :len(ids)] = 1
                logits = model(input_ids=input_ids.to(self.device),
                               attention_mask=attention_mask.to(self.device)).logits  # (n, 1)
                scores[rows] = logits[:, 0].float().cpu()
        return scores  # (N,)


def reward_functions(ensemble: RewardModelEnsemble) -> dict[str, RewardFunction]:
    """Reward functions for the trainer: "reward_model", the combined score, and
    "reward_model/<i>", model i's own score (refs order), so each is recorded per completion.

    The models run once per batch: whichever function is called first scores the batch, and the
    others read the result while they are called with the same prompts and completions.
    """
    last: dict[str, Any] = {}

    def scored(prompts: list[str], completions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        key = (list(prompts), list(completions))
        if last.get("key") != key:
            last["key"], last["scores"] = key, ensemble.score(*key)
        return last["scores"]

    def combined(prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
        return scored(prompts, completions)[0].tolist()

    def one_model(i: int) -> RewardFunction:
        def model_score(prompts: list[str], completions: list[str], **columns: Any,
                        ) -> list[float]:
            return scored(prompts, completions)[1][i].tolist()
        return model_score

    return {"reward_model": combined,
            **{f"reward_model/{i}": one_model(i) for i in range(len(ensemble.refs))}}


def build_tiny_reward_model(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a random 2-layer Llama sequence classifier (one score) with the SmolLM2 tokenizer,
    the tokenizer of `build_tiny_model`, to `path`. For tests: each seed gives another model."""
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m-instruct"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        num_labels=1, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _load_reward_model(ref: str, *, dtype: torch.dtype):
    """A sequence classifier with one score, in eval mode, and its tokenizer; its pad token id
    set, since the score is read at the last token that is not padding."""
    if ref.strip().startswith("builtin:"):
        raise NotARewardModel(
            f"{ref!r} names a built-in policy, not a reward model. Give a reward model: a "
            f"sequence-classification model with one score, as a local folder or a hub id.")
    source = resolve_model(ref)
    try:
        config = AutoConfig.from_pretrained(source)
        architectures = config.architectures or []
        if not any(name.endswith("ForSequenceClassification") for name in architectures) \
                or config.num_labels != 1:
            kind = ", ".join(architectures) or "an unnamed architecture"
            raise NotARewardModel(
                f"{ref!r} is not a reward model: it is {kind} with {config.num_labels} "
                f"label(s). A reward model is a sequence-classification model with one score "
                f"(num_labels=1), such as one trained with TRL's RewardTrainer.")
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        if isinstance(source, Path):
            raise
        raise ModelNotFound(
            f"Could not load the reward model {ref!r} from the Hugging Face hub "
            f"({described(exc)}). If the worker is offline, give a local folder in Hugging Face "
            f"format.") from exc
    text_config = model.config.get_text_config()
    if text_config.pad_token_id is None:
        text_config.pad_token_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                    else tokenizer.eos_token_id)
    model.eval().requires_grad_(False)
    return model, tokenizer


def _token_ids(tokenizer, prompts: list[str], completions: list[str]) -> list[list[int]]:
    """Each (prompt, completion) as the reward model's tokens: a chat when it has a template."""
    if tokenizer.chat_template:
        texts = [tokenizer.apply_chat_template(
                     [{"role": "user", "content": prompt},
                      {"role": "assistant", "content": completion}], tokenize=False)
                 for prompt, completion in zip(prompts, completions, strict=True)]
        # The template writes the special tokens itself.
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    texts = [f"{prompt}\n\n{completion}"
             for prompt, completion in zip(prompts, completions, strict=True)]
    return tokenizer(texts)["input_ids"]


def _max_length(model, tokenizer) -> int:
    """The most tokens the model reads: the smaller of the tokenizer's and the model's limits
    (a tokenizer without one says 1e30)."""
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    return int(min(tokenizer.model_max_length, positions or math.inf))
