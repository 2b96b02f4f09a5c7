"""IFPO weights / estimator (methods.md section 3, our formula) and ifpo_stats."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ascl_algo_refs import batches, groups_of, ref_grpo, ref_ifpo, ref_ifpo_weights
from ascl_ray.algo import get_advantage_estimator, ifpo_stats, ifpo_weights

SETTINGS = settings(max_examples=120, deadline=None)
F64 = torch.float64
ifpo = get_advantage_estimator("ifpo")
grpo = get_advantage_estimator("grpo")


def t(x, dtype=F64):
    return torch.tensor(x, dtype=dtype)


def close(got, want, tol=1e-8):
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.to(F64), t(want), rtol=tol, atol=tol)


clip_bounds = st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]), st.sampled_from([1.0, 1.5, 2.0, 4.0, float("inf")]))


@SETTINGS
@given(
    b=batches(),
    scope=st.sampled_from(["group", "batch"]),
    bounds=clip_bounds,
    norm_std=st.booleans(),
    apply_to=st.sampled_from(["all", "positive_only"]),
)
def test_ifpo_matches_reference(b, scope, bounds, norm_std, apply_to):
    r, g, m = b
    opts = dict(freq_scope=scope, w_min=bounds[0], w_max=bounds[1])
    w = ifpo_weights(torch.tensor(g), torch.tensor(m), **opts)
    close(w, ref_ifpo_weights(g, m, **opts))
    adv = ifpo(t(r), torch.tensor(g), torch.tensor(m), norm_std=norm_std, apply_to=apply_to, **opts)
    close(adv, ref_ifpo(r, g, m, norm_std=norm_std, apply_to=apply_to, **opts))


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(batches(max_groups=4), min_size=1, max_size=5), momentum=st.sampled_from([0.0, 0.5, 0.9]))
def test_ifpo_ema_matches_reference_over_steps(steps, momentum):
    state, ref_state = {}, {}
    for r, g, m in steps:
        adv = ifpo(t(r), torch.tensor(g), torch.tensor(m), freq_scope="ema", ema_momentum=momentum, state=state)
        want = ref_ifpo(r, g, m, freq_scope="ema", ema_momentum=momentum, state=ref_state)
        close(adv, want)
        assert state["p_ema"] == pytest.approx(ref_state["p_ema"], abs=1e-12)
    assert state["ema_steps"] == len(steps)


@SETTINGS
@given(b=batches(modes_mode="single"), norm_std=st.booleans(), apply_to=st.sampled_from(["all", "positive_only"]))
def test_single_mode_groups_reduce_exactly_to_grpo(b, norm_std, apply_to):
    r, g, m = b
    R, G, M = t(r), torch.tensor(g), torch.tensor(m)
    # even with clip bounds that would move a weight of 1 if it were clipped
    w = ifpo_weights(G, M, w_min=1.0, w_max=1.0)
    assert torch.equal(w, torch.ones_like(w))
    for bounds in [(0.25, 4.0), (0.0, float("inf"))]:
        got = ifpo(R, G, M, norm_std=norm_std, apply_to=apply_to, w_min=bounds[0], w_max=bounds[1])
        assert torch.equal(got, grpo(R, G, norm_std=norm_std))


@SETTINGS
@given(b=batches(min_size=2))
def test_equal_total_weight_per_mode_without_clipping(b):
    r, g, m = b
    w = ifpo_weights(torch.tensor(g), torch.tensor(m), w_min=0.0, w_max=float("inf")).tolist()
    for idx in groups_of(g).values():
        consult = [w[i] for i in idx if m[i]]
        direct = [w[i] for i in idx if not m[i]]
        if consult and direct:
            assert sum(consult) == pytest.approx(len(idx) / 2, rel=1e-12)
            assert sum(direct) == pytest.approx(len(idx) / 2, rel=1e-12)
        else:
            assert all(x == 1.0 for x in consult + direct)


def test_equal_total_weight_with_default_clip_when_not_binding():
    # G = 8: 2 consult, 6 direct -> w_c = 8/4 = 2, w_d = 8/12 = 2/3; both inside [0.25, 4]
    g = torch.tensor([5] * 8)
    m = torch.tensor([1, 0, 0, 1, 0, 0, 0, 0])
    w = ifpo_weights(g, m)
    close(w, [2.0, 2 / 3, 2 / 3, 2.0, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert float(w[m == 1].sum()) == pytest.approx(4.0) == float(w[m == 0].sum())


@SETTINGS
@given(b=batches(max_size=16), bounds=clip_bounds, scope=st.sampled_from(["group", "batch"]))
def test_clip_bounds_hold(b, bounds, scope):
    _, g, m = b
    w = ifpo_weights(torch.tensor(g), torch.tensor(m), freq_scope=scope, w_min=bounds[0], w_max=bounds[1])
    assert ((w >= bounds[0]) & (w <= bounds[1])).all()


def test_clip_binds_hand_example():
    # G = 10, one consult: w_c = 10/(2*1) = 5 -> 4 ; w_d = 10/18 = 0.5556
    g = torch.tensor([1] * 10)
    m = torch.tensor([1] + [0] * 9)
    close(ifpo_weights(g, m), [4.0] + [10 / 18] * 9)
    # tighter bounds bind on both sides
    close(ifpo_weights(g, m, w_min=0.8, w_max=2.0), [2.0] + [0.8] * 9)


def test_batch_scope_hand_computation():
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    m = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0])  # p = 0.25 -> w_c = 2, w_d = 1/1.5
    close(ifpo_weights(g, m, freq_scope="batch"), [2.0, 2 / 3, 2 / 3, 2 / 3] * 2)
    m1 = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0])  # p = 1/8 -> w_c = 4 (exactly at the bound), w_d = 4/7
    close(ifpo_weights(g, m1, freq_scope="batch"), [4.0] + [4 / 7] * 7)
    close(ifpo_weights(g, m1, freq_scope="batch", w_max=3.0), [3.0] + [4 / 7] * 7)
    for p_all in (0, 1):  # p in {0, 1}: all weights 1
        close(ifpo_weights(g, torch.full((8,), p_all), freq_scope="batch"), [1.0] * 8)


def test_ema_scope_hand_computation():
    g = torch.tensor([0, 0, 1, 1])
    state = {}
    # step 1: p_batch = 0.25 initialises p_ema -> w_c = 2, w_d = 2/3
    w1 = ifpo_weights(g, torch.tensor([1, 0, 0, 0]), freq_scope="ema", state=state, update_state=True)
    close(w1, [2.0, 2 / 3, 2 / 3, 2 / 3])
    assert state["p_ema"] == 0.25
    # step 2: p_batch = 0.75 -> p_ema = 0.9*0.25 + 0.1*0.75 = 0.3 -> w_c = 1/0.6, w_d = 1/1.4
    m2 = torch.tensor([1, 1, 1, 0])
    w2 = ifpo_weights(g, m2, freq_scope="ema", state=state, update_state=True)
    close(w2, [1 / 0.6] * 3 + [1 / 1.4])
    assert state["p_ema"] == pytest.approx(0.3)
    # read-only recomputation for logging gives the same weights and leaves the state alone
    snapshot = dict(state)
    close(ifpo_weights(g, m2, freq_scope="ema", state=state), [1 / 0.6] * 3 + [1 / 1.4])
    assert state == snapshot  # read-only by default
    # with an empty state, a read-only call uses the batch rate and stores nothing
    empty = {}
    close(ifpo_weights(g, m2, freq_scope="ema", state=empty), [2 / 3] * 3 + [2.0])
    assert empty == {}
    # the estimator performs exactly one update per call
    r = t([1.0, 0.0, 1.0, 0.0])
    ifpo(r, g, m2, freq_scope="ema", state=state, ema_momentum=0.5)
    assert state["p_ema"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.75)


def test_positive_only_leaves_negatives_unweighted():
    r = t([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    m = torch.tensor([1, 0, 0, 0, 0, 1, 1, 1])
    base = grpo(r, g)
    w = ifpo_weights(g, m)
    assert not torch.equal(w, torch.ones_like(w))
    got = ifpo(r, g, m, apply_to="positive_only")
    pos = base > 0
    assert pos.any() and (~pos).any()
    assert torch.equal(got[~pos], base[~pos])
    torch.testing.assert_close(got[pos], (w * base)[pos])
    torch.testing.assert_close(ifpo(r, g, m), w * base)


def test_norm_std_false_is_weighted_dr_grpo():
    r, g, m = t([1.0, 0.0, 0.0, 0.5]), torch.tensor([3, 3, 3, 3]), torch.tensor([1, 0, 0, 0])
    w = ifpo_weights(g, m)
    torch.testing.assert_close(ifpo(r, g, m, norm_std=False), w * (r - r.mean()))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scope", ["group", "batch"])
def test_group_order_permutation_invariance(seed, scope):
    gen = torch.Generator().manual_seed(seed)
    B = 30
    g = torch.randint(0, 6, (B,), generator=gen)
    m = torch.randint(0, 2, (B,), generator=gen)
    perm = torch.randperm(B, generator=gen)
    w = ifpo_weights(g, m, freq_scope=scope)
    assert torch.equal(ifpo_weights(g[perm], m[perm], freq_scope=scope), w[perm])


def test_modes_required_and_validated():
    with pytest.raises(ValueError, match=r"ifpo needs `modes`"):
        ifpo(t([1.0, 0.0]), [0, 0])
    with pytest.raises(ValueError, match=r"ifpo needs `modes`"):
        ifpo_weights([0, 0], None)
    with pytest.raises(ValueError, match=r"`modes` has length 1"):
        ifpo_weights([0, 0], [1])
    with pytest.raises(ValueError, match=r"`modes` must be bool or 0/1"):
        ifpo_weights([0, 0], t([0.5, 1.0]))
    with pytest.raises(TypeError, match=r"`group_ids` must be an integer"):
        ifpo_weights(t([0.0, 0.0]), [1, 0])
    with pytest.raises(ValueError, match=r"`group_ids` is empty"):
        ifpo_weights([], [])
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['w_mn'\]"):
        ifpo_weights([0, 0], [1, 0], w_mn=0.1)


# ----------------------------------------------------------------------------- stats
def test_ifpo_stats_hand_example():
    r = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]
    g = [0, 0, 1, 1, 2, 2]
    m = [1, 0, 1, 1, 0, 0]
    types = ["harmful", "harmful", "math", "math", "benign_sensitive", "benign_sensitive"]
    w = ifpo_weights(torch.tensor(g), torch.tensor(m))  # group 0 mixed -> 1, 1 ; others K=1 -> 1
    s = ifpo_stats(t(r), torch.tensor(g), torch.tensor(m), types, t([0.3, 0.7, 1.0, 1.5, 2.0, 5.0]))
    assert s["ifpo/consult_rate"] == pytest.approx(0.5)
    assert s["ifpo/consult_rate/harmful"] == pytest.approx(0.5)
    assert s["ifpo/consult_rate/math"] == 1.0 and s["ifpo/consult_rate/benign_sensitive"] == 0.0
    assert s["ifpo/reward_consult"] == pytest.approx(1.0)
    assert s["ifpo/reward_direct"] == pytest.approx(0.5 / 3)
    assert s["ifpo/groups_both_modes"] == pytest.approx(1 / 3)
    assert s["ifpo/n_groups"] == 3.0
    assert s["ifpo/weight_mean"] == pytest.approx(10.5 / 6)
    assert (s["ifpo/weight_min"], s["ifpo/weight_max"]) == (0.3, 5.0)
    hist = {k.split("/")[-1]: v for k, v in s.items() if k.startswith("ifpo/weight_hist/")}
    assert hist == {"lt_0.5": 1.0, "0.5_1": 1.0, "eq_1": 1.0, "1_2": 1.0, "ge_2": 2.0}
    assert all(type(v) is float for v in s.values())
    s2 = ifpo_stats(r, g, m, None, w)
    assert s2["ifpo/weight_hist/eq_1"] == 6.0 and not any(k.startswith("ifpo/consult_rate/") for k in s2)


def test_ifpo_stats_skips_absent_mode_and_weights():
    s = ifpo_stats([1.0, 0.0], [0, 0], [0, 0], None)
    assert "ifpo/reward_consult" not in s and s["ifpo/reward_direct"] == 0.5
    assert s["ifpo/consult_rate"] == 0.0 and s["ifpo/groups_both_modes"] == 0.0
    assert not any(k.startswith("ifpo/weight") for k in s)
    s = ifpo_stats([1.0, 0.0], [0, 1], [True, True], None)
    assert "ifpo/reward_direct" not in s and s["ifpo/reward_consult"] == 0.5


@SETTINGS
@given(b=batches())
def test_ifpo_stats_histogram_counts_every_sample(b):
    r, g, m = b
    w = ifpo_weights(torch.tensor(g), torch.tensor(m))
    s = ifpo_stats(r, g, m, ["x"] * len(r), w)
    assert sum(v for k, v in s.items() if k.startswith("ifpo/weight_hist/")) == len(r)
    assert s["ifpo/consult_rate/x"] == s["ifpo/consult_rate"] == pytest.approx(sum(m) / len(m))
    n_both = sum(1 for idx in groups_of(g).values() if len({m[i] for i in idx}) == 2)
    assert s["ifpo/groups_both_modes"] == pytest.approx(n_both / len(groups_of(g)))


def test_ifpo_stats_bad_inputs():
    with pytest.raises(ValueError, match=r"`prompt_types` must be a list of 2 strings.*length 3"):
        ifpo_stats([1.0, 0.0], [0, 0], [1, 0], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`prompt_types`.*got a string"):
        ifpo_stats([1.0, 0.0], [0, 0], [1, 0], "ab")
    with pytest.raises(ValueError, match=r"`weights` has length 1"):
        ifpo_stats([1.0, 0.0], [0, 0], [1, 0], None, [1.0])
    with pytest.raises(ValueError, match=r"`weights` contains NaN"):
        ifpo_stats([1.0, 0.0], [0, 0], [1, 0], None, [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"ifpo_stats needs `modes`"):
        ifpo_stats([1.0, 0.0], [0, 0], None, None)
    with pytest.raises(ValueError, match=r"`rewards` contains NaN"):
        ifpo_stats([1.0, float("nan")], [0, 0], [1, 0], None)


def test_grpo_reference_sanity():
    # the reference itself: sample std; guards against a reference that silently agrees with a bug
    assert ref_grpo([0.0, 1.0], [1, 1], eps=0.0) == pytest.approx([-(0.5**0.5), 0.5**0.5])
