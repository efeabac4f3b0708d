"""The metrics of evaluation jobs: pass@k, maj@k and avg@n over n samples per prompt, computed
the same way for every checkpoint (issue 6). Plain Python: the web app shows and exports them.

For one prompt with n samples, c of them correct:

    pass@k = 1 − C(n − c, k) / C(n, k)
        the unbiased estimator of Chen et al. (2021): the chance that k samples drawn from the
        n without replacement hold a correct one (needs n ≥ k);
    avg@n = c / n
        the mean correctness (pass@1 is the same number);
    maj@k = (correct answers among the most voted) / (answers tied for most votes)
        the first k samples vote with their extracted answers; samples without an answer do not
        vote; a tie is broken uniformly at random, so maj@k is the expected correctness.

Each is averaged over the prompts. pass@k uses all n samples, which lowers its variance against
drawing k; maj@k uses the first k, the convention of papers that report maj@k next to pass@k on
the same n samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 − C(n − c, k) / C(n, k), as the product 1 − Π_{i = n−c+1}^{n} (1 − k / i), which never
    forms the large binomials.

    >>> round(pass_at_k(n=10, c=3, k=1), 12), pass_at_k(n=4, c=1, k=4), pass_at_k(n=5, c=0, k=2)
    (0.3, 1.0, 0.0)
    """
    if not 0 <= c <= n:
        raise ValueError(f"the correct samples ({c}) must be between 0 and n ({n})")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least k = {k} samples per prompt, and has {n}")
    if n - c < k:  # every draw of k holds a correct sample
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int) -> float:
    """maj@k of one prompt: the expected correctness of the majority answer among its first k
    samples; `answers[i]` is sample i's extracted answer (None: it gave none), `correct[i]`
    whether that sample is right. Samples with the same answer are all right or all wrong.

    >>> majority_at_k(["7", "7", "8"], [True, True, False], k=3)
    1.0
    >>> majority_at_k(["7", "8", None], [True, False, False], k=3)  # a tie: 7 or 8
    0.5
    """
    if not 1 <= k <= len(answers):
        raise ValueError(f"maj@{k} needs at least k = {k} samples per prompt, and has "
                         f"{len(answers)}")
    votes = Counter(answer for answer in answers[:k] if answer is not None)
    if not votes:
        return 0.0  # no sample gave an answer
    top = max(votes.values())
    tied = [answer for answer, count in votes.items() if count == top]
    right = {answer for answer, ok in zip(answers[:k], correct[:k], strict=True) if ok}
    return sum(answer in right for answer in tied) / len(tied)


@dataclass(frozen=True)
class PromptSamples:
    """The n samples of one prompt, as the evaluation scored them."""

    prompt_id: str
    answers: tuple[Hashable | None, ...]  # extracted answers, for majority voting
    correct: tuple[bool, ...]
    rewards: tuple[float, ...]
    lengths: tuple[int, ...]  # completion tokens


def summarize(prompts: Sequence[PromptSamples], *, pass_ks: Sequence[int] = (1,),
              maj_ks: Sequence[int] = ()) -> dict[str, float]:
    """The evaluation's metrics, each the mean over prompts: pass@k for each k in pass_ks,
    maj@k for each k in maj_ks, avg@n, the mean reward and the mean completion length."""
    if not prompts:
        raise ValueError("nothing to summarize: no prompts were evaluated")
    n = len(prompts[0].correct)
    if any(len(p.correct) != n for p in prompts):
        raise ValueError("every prompt needs the same number of samples")
    count = len(prompts)
    metrics = {f"pass@{k}": sum(pass_at_k(n, sum(p.correct), k) for p in prompts) / count
               for k in pass_ks}
    metrics.update({f"maj@{k}": sum(majority_at_k(p.answers, p.correct, k)
                                    for p in prompts) / count for k in maj_ks})
    metrics[f"avg@{n}"] = sum(sum(p.correct) / n for p in prompts) / count
    metrics["reward/mean"] = sum(sum(p.rewards) for p in prompts) / (count * n)
    metrics["length/mean"] = sum(sum(p.lengths) for p in prompts) / (count * n)
    return metrics
