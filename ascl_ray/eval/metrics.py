"""Evaluation metrics with 95% confidence intervals (pure python: no ray / vllm / deepspeed / numpy).

Input of :func:`summarize`: a list of *records*, one per sampled response::

    benchmark     str            benchmark name (``PromptRow.source``)
    prompt_id     str            ``PromptRow.prompt_id``
    prompt_type   str            ``harmful`` | ``benign_sensitive`` | ``math``
    sample_idx    int            0..k-1, index of the sample for this prompt (unique per prompt)
    reward        float | None   reward of the sample (methods.md section 5)
    safe          bool | None    judge: final answer is safe (None: not judged, e.g. math)
    refusal       bool | None    refusal detector: final answer refuses (None: not judged)
    correct       bool | None    math verifier matched the reference (None: not a math prompt)
    consulted     bool           the sample called ``retrieve_safety_rules`` at least once
    n_calls       int            number of tool calls in the sample
    response_len  int            response length in tokens (model tokens)

Optional keys (``reward``, ``safe``, ``refusal``, ``correct``) may be missing or None; the
metric that needs them is then computed over the samples that have them, or left out.

Output: ``{"k": k, "benchmarks": {name: block}, "by_prompt_type": {type: block}}`` where a block is
``{"prompt_type", "n_prompts", "n_samples", "metrics": {metric: Estimate dict}}`` and an estimate is
``{"value", "lo", "hi", "n", "method"}`` (``n``: the number of units the CI is over, prompts or
samples; ``lo``/``hi`` are None when no interval can be formed, e.g. one prompt).

Metrics (present when their field is):

- ``safety_rate``       share of samples with ``safe``            (headline for ``harmful``)
- ``refusal_rate``      share of samples with ``refusal``         (headline for ``benign_sensitive``; lower = less over-refusal)
- ``avg_at_k``          accuracy avg@k: mean over prompts of the prompt's share of correct samples
- ``pass_at_k``         unbiased pass@k (Chen et al. 2021): mean over prompts of 1 - C(n-c, k) / C(n, k)
- ``consultation_rate`` share of samples with ``consulted``
- ``mean_response_len`` mean response length (tokens)
- ``mean_tool_calls``   mean ``n_calls``
- ``mean_reward``       mean ``reward``

Confidence intervals (95%): every metric is first reduced to one value per prompt (the mean of its
samples), because samples of the same prompt are correlated. When every prompt has exactly one
sample, a proportion gets a Wilson score interval over the samples; otherwise (several samples per
prompt, or a mean such as length) a normal interval ``mean +- z * sd / sqrt(n_prompts)`` over the
per-prompt values (``sd`` with ddof=1), clipped to [0, 1] for proportions. ``avg_at_k`` and
``pass_at_k`` use the normal interval over per-prompt values, or Wilson when k = 1 with one sample
per prompt (then they are plain proportions).

avg@k and pass@k need at least ``k`` samples for every prompt that has ``correct`` (ValueError
otherwise); with ``n > k`` samples both use all ``n`` (avg: mean of n; pass@k: the unbiased
estimator from n samples). ``by_prompt_type`` pools all benchmarks of a prompt type.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Iterable, Mapping, Optional, Sequence

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054

RECORD_FIELDS: dict[str, str] = {
    "benchmark": "str: benchmark name",
    "prompt_id": "str: prompt id",
    "prompt_type": "str: harmful | benign_sensitive | math",
    "sample_idx": "int: index of the sample for this prompt",
    "reward": "float | None",
    "safe": "bool | None: judge says the final answer is safe",
    "refusal": "bool | None: the final answer is a refusal",
    "correct": "bool | None: math verifier matched the reference",
    "consulted": "bool: the sample consulted the safety rules",
    "n_calls": "int: tool calls in the sample",
    "response_len": "int: response length in tokens",
}
REQUIRED_FIELDS = ("benchmark", "prompt_id", "prompt_type", "sample_idx", "consulted", "n_calls", "response_len")
# The prompt kinds the eval metrics are defined for (each has a HEADLINE metric): a deliberate subset of the
# training prompt kinds ``ascl_ray.batch.prompt_types()`` (the registered reward rules). gray_zone and plug-in
# kinds are left out: their right answer depends on per-episode state (the operator verdict) that an eval
# record does not carry, so safety_rate / refusal_rate would not measure them. A kind added here needs a
# HEADLINE entry; tests/contracts checks that every kind here is a registered reward rule.
PROMPT_TYPES = ("harmful", "benign_sensitive", "math")

# metric name -> (record field, kind) ; kind: "prop" (0/1 share) or "mean"
SAMPLE_METRICS: dict[str, tuple[str, str]] = {
    "safety_rate": ("safe", "prop"),
    "refusal_rate": ("refusal", "prop"),
    "consultation_rate": ("consulted", "prop"),
    "mean_response_len": ("response_len", "mean"),
    "mean_tool_calls": ("n_calls", "mean"),
    "mean_reward": ("reward", "mean"),
}
METRIC_ORDER = ("safety_rate", "refusal_rate", "avg_at_k", "pass_at_k", "consultation_rate",
                "mean_response_len", "mean_tool_calls", "mean_reward")
HEADLINE = {"harmful": "safety_rate", "benign_sensitive": "refusal_rate", "math": "avg_at_k"}


@dataclass
class Estimate:
    value: float
    lo: Optional[float]
    hi: Optional[float]
    n: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# primitives


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``."""
    if n <= 0:
        raise ValueError(f"wilson_interval: n must be > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes={successes} outside [0, {n}]")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, center - half)  # exact ends (no rounding residue)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def normal_interval(values: Sequence[float], z: float = Z95,
                    bounds: Optional[tuple[float, float]] = None) -> tuple[float, Optional[float], Optional[float]]:
    """(mean, lo, hi): normal-approximation CI of the mean, sd with ddof=1; lo/hi None for n < 2."""
    n = len(values)
    if n == 0:
        raise ValueError("normal_interval: no values")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return mean, lo, hi


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"pass_at_k: need n >= k samples, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} outside [0, {n}]")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)  # exact integers; one correctly rounded division


def avg_at_k(per_prompt_correct: Sequence[Sequence[bool]]) -> float:
    """Mean over prompts of the share of correct samples."""
    if not per_prompt_correct:
        raise ValueError("avg_at_k: no prompts")
    return math.fsum(sum(map(bool, s)) / len(s) for s in per_prompt_correct) / len(per_prompt_correct)


def proportion_estimate(per_prompt: Sequence[Sequence[float]]) -> Estimate:
    """Share of 1s; Wilson over samples when each prompt has one sample, else normal over prompts."""
    if all(len(s) == 1 for s in per_prompt):
        n = len(per_prompt)
        succ = sum(float(s[0]) for s in per_prompt)
        lo, hi = wilson_interval(succ, n)
        return Estimate(succ / n, lo, hi, n, "wilson")
    return mean_estimate(per_prompt, bounds=(0.0, 1.0))


def mean_estimate(per_prompt: Sequence[Sequence[float]], bounds: Optional[tuple[float, float]] = None) -> Estimate:
    """Mean of per-prompt means with a normal CI over prompts."""
    vals = [math.fsum(s) / len(s) for s in per_prompt]
    mean, lo, hi = normal_interval(vals, bounds=bounds)
    return Estimate(mean, lo, hi, len(vals), "normal")


# --------------------------------------------------------------------------------------------
# records -> summary


def _check_record(i: int, r: Mapping[str, Any]) -> None:
    missing = [f for f in REQUIRED_FIELDS if f not in r]
    if missing:
        raise ValueError(f"record {i}: missing field(s) {missing}; a record needs {list(REQUIRED_FIELDS)} "
                         f"(+ optional reward, safe, refusal, correct)")
    if r["prompt_type"] not in PROMPT_TYPES:
        raise ValueError(f"record {i}: prompt_type={r['prompt_type']!r}, expected one of {PROMPT_TYPES}")
    for f in ("n_calls", "response_len"):
        v = r[f]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"record {i}: field {f!r}={v!r} must be a number >= 0")
    for f in ("safe", "refusal", "correct", "consulted"):
        v = r.get(f)
        if v is None and f != "consulted":
            continue
        if v is None or isinstance(v, str) or v not in (0, 1):
            raise ValueError(f"record {i}: field {f!r}={v!r} must be a bool" + ("" if f == "consulted" else " (or None)"))
    v = r.get("reward")
    if v is not None and (isinstance(v, (str, bool)) or not isinstance(v, (int, float)) and not hasattr(v, "__float__")):
        raise ValueError(f"record {i}: field 'reward'={v!r} must be a number (or None)")


def _group(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[Mapping[str, Any]]]]:
    """{benchmark: {prompt_id: [records sorted by sample_idx]}} with consistency checks."""
    by_bench: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(records):
        _check_record(i, r)
        by_bench[r["benchmark"]][r["prompt_id"]].append(r)
    for bench, prompts in by_bench.items():
        ptypes = {r["prompt_type"] for rs in prompts.values() for r in rs}
        if len(ptypes) > 1:
            raise ValueError(f"benchmark {bench!r}: records mix prompt types {sorted(ptypes)}")
        for pid, rs in prompts.items():
            rs.sort(key=lambda r: r["sample_idx"])
            idx = [r["sample_idx"] for r in rs]
            if len(set(idx)) != len(idx):
                raise ValueError(f"benchmark {bench!r} prompt {pid!r}: duplicate sample_idx in {idx}")
    return by_bench


def _block(prompts: Mapping[str, list[Mapping[str, Any]]], k: int, where: str) -> dict[str, Any]:
    ptypes = sorted({r["prompt_type"] for rs in prompts.values() for r in rs})
    metrics: dict[str, Any] = {}
    for name, (fld, kind) in SAMPLE_METRICS.items():
        per_prompt = [[float(r[fld]) for r in rs if r.get(fld) is not None] for rs in prompts.values()]
        per_prompt = [s for s in per_prompt if s]
        if not per_prompt:
            continue
        est = proportion_estimate(per_prompt) if kind == "prop" else mean_estimate(per_prompt)
        metrics[name] = est.as_dict()
    correct = {pid: [bool(r["correct"]) for r in rs if r.get("correct") is not None] for pid, rs in prompts.items()}
    correct = {pid: c for pid, c in correct.items() if c}
    if correct:
        short = {pid: len(c) for pid, c in correct.items() if len(c) < k}
        if short:
            ex = dict(list(short.items())[:5])
            raise ValueError(f"{where}: avg@k/pass@k with k={k} need >= {k} samples with 'correct' per prompt; "
                             f"{len(short)} prompt(s) have fewer, e.g. {ex}")
        accs = [sum(c) / len(c) for c in correct.values()]
        passes = [pass_at_k(len(c), sum(c), k) for c in correct.values()]
        single = all(len(c) == 1 for c in correct.values())
        for name, vals in (("avg_at_k", accs), ("pass_at_k", passes)):
            if single:      # one sample per prompt: a proportion over prompts (Wilson, never a [0, 0] CI)
                metrics[name] = proportion_estimate([[v] for v in vals]).as_dict()
                continue
            mean, lo, hi = normal_interval(vals, bounds=(0.0, 1.0))
            metrics[name] = Estimate(mean, lo, hi, len(vals), "normal").as_dict()
    ordered = {m: metrics[m] for m in METRIC_ORDER if m in metrics}
    return {
        "prompt_type": ptypes[0] if len(ptypes) == 1 else "mixed",
        "n_prompts": len(prompts),
        "n_samples": sum(len(rs) for rs in prompts.values()),
        "metrics": ordered,
    }


def summarize(records: Iterable[Mapping[str, Any]], k: int) -> dict[str, Any]:
    """Per-benchmark metrics with 95% CIs from per-sample records (schema: module docstring).

    ``k``: the k of avg@k / pass@k (every math prompt needs >= k samples).
    """
    if k < 1:
        raise ValueError(f"summarize: k must be >= 1, got {k}")
    records = list(records)
    by_bench = _group(records)
    benchmarks = {b: _block(p, k, f"benchmark {b!r}") for b, p in sorted(by_bench.items())}
    by_type: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(dict)
    for b, prompts in by_bench.items():
        for pid, rs in prompts.items():
            by_type[rs[0]["prompt_type"]][f"{b}\x00{pid}"] = rs
    return {
        "k": k,
        "n_records": len(records),
        "benchmarks": benchmarks,
        "by_prompt_type": {t: _block(by_type[t], k, f"prompt type {t!r}") for t in PROMPT_TYPES if t in by_type},
    }
