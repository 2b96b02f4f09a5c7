"""GRPO / RLOO / REINFORCE++-baseline estimators, DAPO group filter, input validation."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ascl_algo_refs import batches, ref_filter, ref_grpo, ref_ifpo, ref_rloo, ref_rpp
from ascl_ray.algo import filter_uniform_groups, get_advantage_estimator

SETTINGS = settings(max_examples=150, deadline=None)
F64 = torch.float64


def t(x, dtype=F64):
    return torch.tensor(x, dtype=dtype)


def assert_close(got, want):
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.to(F64), t(want), rtol=1e-9, atol=1e-7)


@SETTINGS
@given(b=batches(), norm_std=st.booleans())
def test_grpo_matches_reference(b, norm_std):
    r, g, m = b
    got = get_advantage_estimator("grpo")(t(r), torch.tensor(g), t(m), norm_std=norm_std)
    assert got.dtype == F64
    assert_close(got, ref_grpo(r, g, norm_std=norm_std))


@SETTINGS
@given(b=batches())
def test_rloo_matches_reference(b):
    r, g, _ = b
    assert_close(get_advantage_estimator("rloo")(t(r), torch.tensor(g)), ref_rloo(r, g))


@SETTINGS
@given(b=batches())
def test_reinforce_pp_baseline_matches_reference(b):
    r, g, _ = b
    assert_close(get_advantage_estimator("reinforce_pp_baseline")(t(r), torch.tensor(g)), ref_rpp(r, g))


@pytest.mark.parametrize("seed", range(40))
def test_all_estimators_random_seeds(seed):
    """Plain random loop (many group layouts incl. big groups), against the reference loops."""
    rng = random.Random(seed)
    n_groups = rng.randint(1, 30)
    ids = rng.sample(range(-1000, 1000), n_groups)
    rows = []
    for gid in ids:
        size = rng.choice([1, 2, 3, 4, 8, 16])
        p = rng.random()
        rows += [(float(rng.random() < p) if seed % 2 else rng.gauss(0, 3), gid, rng.random() < 0.5) for _ in range(size)]
    rng.shuffle(rows)
    r, g, m = (list(x) for x in zip(*rows))
    R, G, M = t(r), torch.tensor(g), torch.tensor(m)
    assert_close(get_advantage_estimator("grpo")(R, G), ref_grpo(r, g))
    assert_close(get_advantage_estimator("grpo")(R, G, norm_std=False, eps=0.1), ref_grpo(r, g, False))
    assert_close(get_advantage_estimator("rloo")(R, G), ref_rloo(r, g))
    assert_close(get_advantage_estimator("reinforce_pp_baseline")(R, G, eps=1e-3), ref_rpp(r, g, eps=1e-3))
    assert_close(get_advantage_estimator("ifpo")(R, G, M), ref_ifpo(r, g, m))
    assert filter_uniform_groups(R, G).tolist() == ref_filter(r, g)


def test_grpo_uses_sample_std_hand_example():
    # group {0, 1}: mean 0.5, sample std sqrt(0.5) = 0.7071 (population std would give +-1)
    adv = get_advantage_estimator("grpo")(t([0.0, 1.0]), [7, 7], eps=0.0)
    assert_close(adv, [-0.5 / 0.5**0.5, 0.5 / 0.5**0.5])
    # interleaved groups {a: 1, 0, 0}, {b: 2, 4}: hand computed
    adv = get_advantage_estimator("grpo")(t([1.0, 2.0, 0.0, 4.0, 0.0]), [5, 9, 5, 9, 5], eps=0.0)
    sa, sb = (1 / 3) ** 0.5, 2**0.5
    assert_close(adv, [(2 / 3) / sa, -1 / sb, (-1 / 3) / sa, 1 / sb, (-1 / 3) / sa])


def test_rloo_and_rpp_hand_example():
    r, g = t([1.0, 0.0, 0.0, 3.0]), [2, 2, 2, 8]
    assert_close(get_advantage_estimator("rloo")(r, g), [1.0, -0.5, -0.5, 0.0])
    # centred: [2/3, -1/3, -1/3, 0]; batch sample std = sqrt((4/9 + 1/9 + 1/9) / 3) = sqrt(2/9)
    s = (2 / 9) ** 0.5
    assert_close(get_advantage_estimator("reinforce_pp_baseline")(r, g, eps=0.0), [2 / 3 / s, -1 / 3 / s, -1 / 3 / s, 0.0])


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline", "ifpo"])
def test_degenerate_groups_give_exact_zero(name):
    # size-1 groups and all-equal groups (0.1 is not exactly representable: no rounding residue allowed)
    r = t([0.1, 0.1, 0.1, 5.0, 0.7, 0.7])
    g = torch.tensor([3, 3, 3, 4, 6, 6])
    m = torch.tensor([1, 0, 1, 0, 1, 1])
    adv = get_advantage_estimator(name)(r, g, m)
    assert torch.equal(adv, torch.zeros(6, dtype=F64))


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline", "ifpo"])
@pytest.mark.parametrize("seed", range(5))
def test_permutation_equivariance_and_relabelling(name, seed):
    gen = torch.Generator().manual_seed(seed)
    B = 24
    r = torch.randint(0, 3, (B,), generator=gen).to(F64) / 2
    g = torch.randint(0, 5, (B,), generator=gen)
    m = torch.randint(0, 2, (B,), generator=gen)
    est = get_advantage_estimator(name)
    base = est(r, g, m)
    perm = torch.randperm(B, generator=gen)
    torch.testing.assert_close(est(r[perm], g[perm], m[perm]), base[perm], rtol=1e-12, atol=1e-12)
    relabel = torch.tensor([40, -3, 17, 10**9, 0])  # any bijection of ids
    torch.testing.assert_close(est(r, relabel[g], m), base, rtol=0, atol=0)


def test_groups_not_inferred_from_positions():
    # same multiset of rewards per position, different grouping -> different advantages
    r = t([1.0, 0.0, 1.0, 0.0])
    contiguous = get_advantage_estimator("grpo")(r, [0, 0, 1, 1])
    interleaved = get_advantage_estimator("grpo")(r, [0, 1, 0, 1])
    assert not torch.equal(contiguous, interleaved)
    assert torch.equal(interleaved, torch.zeros(4, dtype=F64))


def test_dtypes_and_inputs():
    est = get_advantage_estimator("grpo")
    out32 = est(torch.tensor([0.0, 1.0]), torch.tensor([1, 1], dtype=torch.int32))
    assert out32.dtype == torch.float32
    assert est([0, 1], [1, 1]).dtype == torch.float32  # python lists, integer rewards
    assert est(torch.tensor([0.0, 1.0], dtype=torch.bfloat16), [1, 1]).dtype == torch.bfloat16
    assert torch.isfinite(est(t([1e100, -1e100, 3e100]), [0, 0, 0])).all()


@SETTINGS
@given(b=batches())
def test_filter_uniform_groups_matches_reference(b):
    r, g, _ = b
    keep = filter_uniform_groups(t(r), torch.tensor(g))
    assert keep.dtype == torch.bool and keep.tolist() == ref_filter(r, g)


def test_filter_uniform_groups_atol():
    r, g = t([1.0, 1.05, 0.0, 1.0, 0.5]), [0, 0, 1, 1, 2]
    assert filter_uniform_groups(r, g).tolist() == [True, True, True, True, False]
    assert filter_uniform_groups(r, g, atol=0.1).tolist() == [False, False, True, True, False]
    with pytest.raises(ValueError, match="atol"):
        filter_uniform_groups(r, g, atol=-1)


# ----------------------------------------------------------------------------- bad input
NAN = float("nan")


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline", "ifpo"])
@pytest.mark.parametrize(
    "rewards, group_ids, modes, exc, pattern",
    [
        ([1.0, 0.0], [0, 0, 1], [1, 0], ValueError, r"`group_ids` has length 3 but `rewards` has length 2"),
        ([1.0, 0.0], [0, 0], [1, 0, 1], ValueError, r"`modes` has length 3 but `rewards` has length 2"),
        ([1.0, NAN], [0, 0], [1, 0], ValueError, r"`rewards` contains NaN/inf at index \[1\]"),
        ([1.0, float("inf")], [0, 0], [1, 0], ValueError, r"`rewards` contains NaN/inf"),
        ([], [], [], ValueError, r"`rewards` is empty"),
        ([1.0, 0.0], [0.0, 1.0], [1, 0], TypeError, r"`group_ids` must be an integer tensor"),
        ([1.0, 0.0], [True, False], [1, 0], TypeError, r"`group_ids` must be an integer tensor"),
        ([[1.0, 0.0]], [0, 0], [1, 0], ValueError, r"`rewards` must be 1-D"),
        ([1.0, 0.0], [[0, 0]], [1, 0], ValueError, r"`group_ids` must be 1-D"),
        ([1.0, 0.0], [0, 0], [2, 0], ValueError, r"`modes` must be bool or 0/1"),
        ("ab", [0, 0], [1, 0], TypeError, r"`rewards` must be a tensor"),
    ],
)
def test_bad_inputs_name_the_argument(name, rewards, group_ids, modes, exc, pattern):
    est = get_advantage_estimator(name)
    R = rewards if isinstance(rewards, str) else torch.tensor(rewards, dtype=F64)
    with pytest.raises(exc, match=pattern):
        est(R, torch.tensor(group_ids), torch.tensor(modes))


@pytest.mark.parametrize(
    "name, options, pattern",
    [
        ("grpo", {"eps": -1.0}, "eps"),
        ("grpo", {"eps": NAN}, "eps"),
        ("grpo", {"norm_std": "yes"}, "norm_std"),
        ("grpo", {"normstd": False}, "normstd"),  # typo in an option name
        ("rloo", {"eps": 1e-6}, "eps"),  # rloo has no options
        ("reinforce_pp_baseline", {"eps": -0.5}, "eps"),
        ("ifpo", {"w_min": 2.0, "w_max": 1.5}, r"w_min=2.0 > w_max=1.5"),
        ("ifpo", {"w_min": 1.5}, r"w_min <= 1 <= w_max"),
        ("ifpo", {"w_max": 0.5}, r"w_min <= 1 <= w_max"),
        ("ifpo", {"freq_scope": "global"}, r"unknown freq_scope='global'.*group.*batch.*ema"),
        ("ifpo", {"apply_to": "negative_only"}, r"unknown apply_to='negative_only'"),
        ("ifpo", {"freq_scope": "ema"}, r"needs option `state`"),
        ("ifpo", {"freq_scope": "ema", "state": {}, "ema_momentum": 1.0}, r"ema_momentum"),
        ("ifpo", {"freq_scope": "ema", "state": {"p_ema": 1.5}}, r"p_ema"),
    ],
)
def test_bad_options_name_the_option(name, options, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        get_advantage_estimator(name)(t([1.0, 0.0]), [0, 0], [1, 0], **options)


def test_unknown_estimator_name():
    with pytest.raises(KeyError, match="unknown advantage estimator 'gpro'.*grpo"):
        get_advantage_estimator("gpro")
