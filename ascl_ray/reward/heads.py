"""Logistic heads trained on a *mix* of labelled sources, and the heads shipped in the package.

A head is ``sigmoid(w . x + b)`` over ``classifier.FeatureSpec`` features (MiniLM embedding + hashed n-grams
+ refusal-pattern signals), saved with ``classifier.save_head`` (``head.safetensors`` + ``config.json``).
Training here differs from ``train_classifier.train_head`` (one file) in two ways:

* **source-balanced loss**: every source carries the same total weight (and, inside a source, both classes
  when it has both), so a 6,160-row source cannot drown a 450-row one;
* **threshold and L2 chosen by grouped cross-validation on the training mix only** (``k`` folds, disjoint in
  ``Example.group``, i.e. by prompt): the threshold maximises the source-balanced accuracy of out-of-fold
  predictions. No held-out source is ever seen.

Shipped heads (``ascl_ray/reward/heads/<name>/``, ~70 KB each), trained by
``python -m ascl_ray.reward.judge_study --train-heads`` (split in ``judge_study.SPLIT``):

  ``harm_mix``     label ``harmful``;  trained on gptfuzz_train + xstest_gpt4
  ``refusal_mix``  label ``refusal`` (= did not comply); trained on xstest_gpt4 (human refusal labels) +
                   gptfuzz_train (refusal := not harmful: on a harmful prompt, not jailbroken)

torch is imported lazily.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["HEADS_DIR", "shipped_head_dir", "concat_features", "fit_weighted", "source_weights", "train_mix",
           "featurize", "predict_proba", "CachedEncoder"]

HEADS_DIR = Path(__file__).resolve().parent / "heads"


def shipped_head_dir(name: str) -> Path:
    d = HEADS_DIR / name
    if not (d / "head.safetensors").is_file():
        raise FileNotFoundError(f"no shipped head {name!r} in {HEADS_DIR} (train it with "
                                "python -m ascl_ray.reward.judge_study --train-heads)")
    return d


def concat_features(parts: Sequence[Any]) -> Any:
    """Stack ``classifier.Features`` row-wise (same spec)."""
    import torch

    from ascl_ray.reward.classifier import Features

    n = 0
    dense, rows, cols, vals = [], [], [], []
    for f in parts:
        if f.dense is not None:
            dense.append(f.dense)
        rows.append(f.rows + n)
        cols.append(f.cols)
        vals.append(f.vals)
        n += f.n
    return Features(n, parts[0].dim, torch.cat(dense) if dense else None, torch.cat(rows), torch.cat(cols),
                    torch.cat(vals))


def featurize(spec: Any, examples: Sequence[Any], encoder: Any, cache_dir: Optional[str] = None) -> Any:
    from ascl_ray.reward.classifier import build_features

    return build_features(spec, [e.prompt for e in examples], [e.response for e in examples], encoder,
                          cache_dir=cache_dir)


def source_weights(sources: Sequence[str], labels: Sequence[int], min_share: float = 0.1) -> list[float]:
    """Each source sums to 1/n_sources; inside a source whose minority class has at least ``min_share`` of its
    rows, each class sums to half of it (a source with 1 positive in 450 keeps uniform row weights: balancing
    would give that single row half the source's weight)."""
    from collections import Counter

    by_src = Counter(sources)
    by_cls = Counter(zip(sources, labels))
    n_src = len(by_src)
    out = []
    for s, y in zip(sources, labels):
        balanced = min(by_cls[(s, 0)], by_cls[(s, 1)]) >= min_share * by_src[s]
        out.append(1.0 / n_src / (2 * by_cls[(s, y)] if balanced else by_src[s]))
    return out


def fit_weighted(x: Any, y: Any, w: Any, l2: float, steps: int = 200) -> tuple[Any, Any]:
    """Weighted L2-penalised logistic regression (L-BFGS). ``w`` sums to 1."""
    import torch

    wt = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([wt, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    yf = y.float()

    def closure():
        opt.zero_grad()
        logits = x.matvec(wt) + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yf, reduction="none") * w).sum()
        loss = loss + l2 * (wt * wt).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return wt.detach().clone(), b.detach().clone()


def predict_proba(x: Any, wt: Any, b: Any) -> Any:
    import torch

    return torch.sigmoid(x.matvec(wt) + b)


def _balanced_acc(p: Any, y: Any, src: list[str], t: float) -> float:
    accs = []
    for s in sorted(set(src)):
        idx = [i for i, v in enumerate(src) if v == s]
        accs.append(sum(int(p[i] >= t) == int(y[i]) for i in idx) / len(idx))
    return sum(accs) / len(accs)


def train_mix(feats: Any, labels: Sequence[int], sources: Sequence[str], groups: Sequence[str], spec: Any,
              l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2), k: int = 4, seed: int = 0, log=print) -> Any:
    """Fit a head on a mix; L2 and threshold by ``k``-fold group CV (source-balanced accuracy of out-of-fold
    predictions). Returns a ``classifier.HarmHead`` with ``meta`` (sources, counts, cv figures)."""
    import torch

    from ascl_ray.reward.classifier import HarmHead

    y = torch.tensor([int(v) for v in labels])
    src = list(sources)
    w = torch.tensor(source_weights(src, [int(v) for v in labels]), dtype=torch.float32)
    keys = sorted({f"{s}|{g}" for s, g in zip(src, groups)})
    random.Random(seed).shuffle(keys)
    fold_of = {g: i % k for i, g in enumerate(keys)}
    fold = torch.tensor([fold_of[f"{s}|{g}"] for s, g in zip(src, groups)])
    best = None
    for lam in l2_grid:
        oof = torch.zeros(len(y))
        for f in range(k):
            tr, te = fold != f, fold == f
            wt, b = fit_weighted(feats.select(tr), y[tr], w[tr] / w[tr].sum(), lam)
            oof[te] = predict_proba(feats.select(te), wt, b)
        ts = [t / 100 for t in range(5, 96)]
        scores = [_balanced_acc(oof.tolist(), y.tolist(), src, t) for t in ts]
        i = max(range(len(ts)), key=lambda j: (scores[j], -abs(ts[j] - 0.5)))
        log(f"[heads] l2={lam:g}: cv source-balanced accuracy {scores[i]:.4f} at threshold {ts[i]:.2f}")
        if best is None or scores[i] > best[2] + 1e-9:
            best = (lam, ts[i], scores[i])
    lam, thr, cv = best
    wt, b = fit_weighted(feats, y, w, lam)
    from collections import Counter

    meta = {"l2": lam, "cv_balanced_accuracy": round(cv, 4), "cv_folds": k, "n_train": len(y),
            "n_pos": int(y.sum()), "sources": dict(Counter(src)), "loss": "source-balanced logistic"}
    return HarmHead(wt, b, float(thr), spec, meta=meta)


class CachedEncoder:
    """Wraps a ``MiniLMEncoder``: ``encode(texts)`` memoised on disk (``classifier.encode_cached``)."""

    def __init__(self, inner: Any, cache_dir: str) -> None:
        self.inner, self.cache_dir = inner, cache_dir
        self.model_dir = getattr(inner, "model_dir", "")
        self.max_length = getattr(inner, "max_length", "")
        self.dim = getattr(inner, "dim", 384)

    def encode(self, texts: Sequence[str]) -> Any:
        from ascl_ray.reward.classifier import encode_cached

        return encode_cached(self.inner, texts, self.cache_dir)
