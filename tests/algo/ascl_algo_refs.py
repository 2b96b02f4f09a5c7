"""Slow, obviously-correct reference implementations (plain Python loops over dicts of groups)
and hypothesis strategies shared by the algo tests."""

from __future__ import annotations

import statistics
from collections import defaultdict

from hypothesis import strategies as st


def groups_of(gids):
    d = defaultdict(list)
    for i, g in enumerate(gids):
        d[g].append(i)
    return dict(d)


def _mean(vals):
    # all-equal values: the mean is that value exactly (fmean may leave a rounding residue, which
    # divided by std + eps = eps would be amplified 1e6-fold; the documented result is exactly 0)
    return vals[0] if len(set(vals)) == 1 else statistics.fmean(vals)


def ref_grpo(r, gids, norm_std=True, eps=1e-6):
    out = [None] * len(r)
    for idx in groups_of(gids).values():
        vals = [r[i] for i in idx]
        mu = _mean(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        for i in idx:
            out[i] = (r[i] - mu) / (sd + eps) if norm_std else r[i] - mu
    return out


def ref_rloo(r, gids):
    out = [None] * len(r)
    for idx in groups_of(gids).values():
        for i in idx:
            others = [r[j] for j in idx if j != i]
            out[i] = r[i] - _mean(others) if others else 0.0
    return out


def ref_rpp(r, gids, eps=1e-6):
    centered = [None] * len(r)
    for idx in groups_of(gids).values():
        mu = _mean([r[i] for i in idx])
        for i in idx:
            centered[i] = r[i] - mu
    sd = statistics.stdev(centered) if len(centered) > 1 else 0.0
    return [c / (sd + eps) for c in centered]


def _clip(x, lo, hi):
    return min(max(x, lo), hi)


def _rate_weights(p, modes, w_min, w_max):
    if p <= 0 or p >= 1:
        return [1.0] * len(modes)
    wc, wd = _clip(1 / (2 * p), w_min, w_max), _clip(1 / (2 * (1 - p)), w_min, w_max)
    return [wc if m else wd for m in modes]


def ref_ifpo_weights(gids, modes, freq_scope="group", w_min=0.25, w_max=4.0, ema_momentum=0.9, state=None):
    modes = [bool(m) for m in modes]
    if freq_scope == "group":
        w = [None] * len(modes)
        for idx in groups_of(gids).values():
            G = len(idx)
            counts = {True: 0, False: 0}
            for i in idx:
                counts[modes[i]] += 1
            K = sum(1 for c in counts.values() if c > 0)
            for i in idx:
                w[i] = 1.0 if K == 1 else _clip(G / (K * counts[modes[i]]), w_min, w_max)
        return w
    p = sum(modes) / len(modes)
    if freq_scope == "ema":
        if "p_ema" in state:
            p = ema_momentum * state["p_ema"] + (1 - ema_momentum) * p
        state["p_ema"] = p
    return _rate_weights(p, modes, w_min, w_max)


def ref_ifpo(r, gids, modes, norm_std=True, eps=1e-6, apply_to="all", **wopts):
    a = ref_grpo(r, gids, norm_std, eps)
    w = ref_ifpo_weights(gids, modes, **wopts)
    if apply_to == "positive_only":
        return [wi * ai if ai > 0 else ai for wi, ai in zip(w, a)]
    return [wi * ai for wi, ai in zip(w, a)]


def ref_filter(r, gids):
    keep = [None] * len(r)
    for idx in groups_of(gids).values():
        uniform = len({r[i] for i in idx}) == 1
        for i in idx:
            keep[i] = not uniform
    return keep


# ----------------------------------------------------------------------------- strategies
REWARD_VALUES = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0]),  # ties and uniform groups are common in outcome rewards
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
)


@st.composite
def batches(draw, max_groups=8, max_size=8, min_size=1, modes_mode="random"):
    """(rewards, group_ids, modes): groups of random sizes with random (unique) integer ids, then
    shuffled so groups are interleaved and out of order. modes_mode: random | single (one mode per
    group)."""
    n_groups = draw(st.integers(1, max_groups))
    ids = draw(st.lists(st.integers(-10**6, 10**6), min_size=n_groups, max_size=n_groups, unique=True))
    uniform_rewards = draw(st.booleans())
    rows = []
    for gid in ids:
        size = draw(st.integers(min_size, max_size))
        if uniform_rewards and draw(st.booleans()):
            v = draw(REWARD_VALUES)
            rewards = [v] * size
        else:
            rewards = draw(st.lists(REWARD_VALUES, min_size=size, max_size=size))
        if modes_mode == "single":
            mode = draw(st.booleans())
            modes = [mode] * size
        else:
            modes = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        rows += [(r, gid, m) for r, m in zip(rewards, modes)]
    rows = draw(st.permutations(rows))
    r, g, m = zip(*rows)
    return list(r), list(g), list(m)
