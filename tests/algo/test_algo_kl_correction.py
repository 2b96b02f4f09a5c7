"""KL estimators (k1/k2/k3, loss term, reward penalty) and rollout/train mismatch correction."""

import math

import pytest
import torch

from ascl_ray.algo import kl_estimate, kl_loss, kl_reward_penalty, mismatch_metrics, tis_weights

F64 = torch.float64


def rand_lp(seed, B=3, T=5):
    gen = torch.Generator().manual_seed(seed)
    lp = -torch.rand(B, T, generator=gen, dtype=F64) * 3
    ref = lp + torch.randn(B, T, generator=gen, dtype=F64) * 0.5
    mask = torch.rand(B, T, generator=gen) < 0.7
    mask[0, 0] = True
    return lp, ref, mask


def test_kl_estimate_formulas():
    lp, ref, _ = rand_lp(0)
    d = (ref - lp).tolist()
    k1, k2, k3 = (kl_estimate(lp, ref, k).tolist() for k in ("k1", "k2", "k3"))
    for i, row in enumerate(d):
        for j, x in enumerate(row):
            assert k1[i][j] == pytest.approx(-x, rel=1e-12)
            assert k2[i][j] == pytest.approx(0.5 * x * x, rel=1e-12)
            assert k3[i][j] == pytest.approx(math.exp(x) - x - 1, rel=1e-10, abs=1e-15)
    assert torch.equal(kl_estimate(lp, ref, "low_var_kl"), kl_estimate(lp, ref, "k3"))
    assert (kl_estimate(lp, ref, "k3") >= 0).all() and (kl_estimate(lp, ref, "k2") >= 0).all()
    assert torch.equal(kl_estimate(lp, lp, "k3"), torch.zeros_like(lp))


def test_k3_is_clamped_and_finite():
    lp = torch.tensor([[-100.0, 0.0]], dtype=F64)
    ref = torch.tensor([[0.0, -100.0]], dtype=F64)
    k3 = kl_estimate(lp, ref, "k3")
    assert torch.isfinite(k3).all() and (k3 <= 10.0).all()


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_unbiased_estimators_match_true_kl_by_monte_carlo(kind):
    """Tokens sampled from pi: mean of k1/k3 -> KL(pi || pi_ref). Checks the direction too."""
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)
    q = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=F64)
    true_kl = float((p * (p / q).log()).sum())
    reverse_kl = float((q * (q / p).log()).sum())
    x = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    est = kl_estimate(p.log()[x][None], q.log()[x][None], kind).mean().item()
    assert est == pytest.approx(true_kl, abs=0.01)
    assert abs(est - reverse_kl) > 0.05


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_gradcheck(kind):
    lp, ref, mask = rand_lp(1)
    x = lp.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y: kl_estimate(y, ref, kind), (x,))
    assert torch.autograd.gradcheck(lambda y: kl_loss(y, ref, mask, kind=kind, coef=0.3)[0], (x,))


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_kl_loss_is_masked_and_scaled(kind, agg):
    lp, ref, mask = rand_lp(2)
    x = lp.clone().requires_grad_()
    loss, metrics = kl_loss(x, ref, mask, kind=kind, coef=0.5, agg=agg)
    per_tok = kl_estimate(lp, ref, kind)
    want_mean = per_tok[mask].mean().item()
    assert metrics["kl"] == pytest.approx(want_mean, rel=1e-12)
    if agg == "token-mean":
        assert loss.item() == pytest.approx(0.5 * want_mean, rel=1e-12)
    loss.backward()
    # garbage on masked tokens of either input changes nothing
    lp2, ref2 = lp.clone(), ref.clone()
    lp2[~mask], ref2[~mask] = float("inf"), float("nan")
    y = lp2.requires_grad_()
    loss2, _ = kl_loss(y, ref2, mask, kind=kind, coef=0.5, agg=agg)
    loss2.backward()
    assert torch.equal(loss2.detach(), loss.detach()) and torch.equal(y.grad, x.grad)
    assert (y.grad[~mask] == 0).all()


def test_kl_reward_penalty_per_sequence():
    lp, ref, mask = rand_lp(3)
    mask[2] = False
    lp_g = lp.clone().requires_grad_()
    pen = kl_reward_penalty(lp_g, ref, mask, kind="k1", coef=0.1)
    assert pen.shape == (3,) and not pen.requires_grad
    want = [0.1 * sum((lp[b, t] - ref[b, t]).item() for t in range(5) if mask[b, t]) for b in range(3)]
    assert pen.tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert pen[2].item() == 0.0
    lp[~mask] = float("inf")
    assert torch.equal(kl_reward_penalty(lp, ref, mask, kind="k1", coef=0.1), pen)


def test_kl_errors_name_the_argument():
    lp, ref, mask = rand_lp(0)
    with pytest.raises(ValueError, match=r"unknown KL `kind` 'k4'.*k1.*k2.*k3"):
        kl_estimate(lp, ref, "k4")
    with pytest.raises(ValueError, match=r"`ref_logprobs` has shape \(3, 4\)"):
        kl_estimate(lp, ref[:, :4], "k1")
    with pytest.raises(ValueError, match=r"`ref_logprobs` has shape"):
        kl_loss(lp, ref[:2], mask)
    with pytest.raises(ValueError, match=r"`loss_mask` has shape"):
        kl_reward_penalty(lp, ref, mask[:, :2])
    with pytest.raises(ValueError, match=r"`coef`"):
        kl_loss(lp, ref, mask, coef=-1.0)


# ----------------------------------------------------------------------------- correction
def test_tis_weights_values_direction_and_masking():
    learner = torch.tensor([[-1.0, -2.0, -0.5, -3.0]], dtype=F64, requires_grad=True)
    rollout = torch.tensor([[-1.5, -1.0, -3.0, float("nan")]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0]])
    w = tis_weights(learner, rollout, mask, cap=2.0)
    # learner more likely than rollout -> weight > 1 (capped at 2); less likely -> < 1
    want = [math.exp(0.5), math.exp(-1.0), 2.0, 1.0]
    assert w.tolist()[0] == pytest.approx(want, rel=1e-12)
    assert not w.requires_grad
    huge = tis_weights(torch.tensor([[1000.0]]), torch.tensor([[-1000.0]]), torch.ones(1, 1), cap=3.0)
    assert huge.item() == pytest.approx(3.0)
    assert torch.equal(tis_weights(learner, rollout, torch.zeros(1, 4)), torch.ones(1, 4, dtype=F64))


def test_tis_weights_random_against_formula():
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randn(6, 9, generator=gen), torch.randn(6, 9, generator=gen)
    mask = torch.rand(6, 9, generator=gen) < 0.6
    w = tis_weights(a, b, mask, cap=1.5)
    want = torch.where(mask, torch.clamp(torch.exp(a - b), max=1.5), torch.ones_like(a))
    torch.testing.assert_close(w, want)


def test_mismatch_metrics():
    learner = torch.tensor([[-1.0, -2.0, -0.5, 5.0], [-1.0, 0.0, 0.0, 0.0]], dtype=F64)
    rollout = torch.tensor([[-1.5, -1.0, -0.5, float("inf")], [-1.2, 0.0, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    m = mismatch_metrics(learner, rollout, mask)
    diffs = [0.5, 1.0, 0.0, 0.2]
    assert m["mismatch/abs_diff_mean"] == pytest.approx(sum(diffs) / 4)
    assert m["mismatch/abs_diff_max"] == pytest.approx(1.0)
    k3 = [math.exp(x) - x - 1 for x in (0.5, -1.0, 0.0, 0.2)]  # x = learner - rollout
    assert m["mismatch/k3_kl"] == pytest.approx(sum(k3) / 4)
    assert m["mismatch/n_tokens"] == 4.0
    assert all(type(v) is float for v in m.values())
    assert set(mismatch_metrics(learner, rollout, torch.zeros(2, 4)).values()) == {0.0}


def test_correction_errors():
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"`cap`"):
        tis_weights(a, a, torch.ones(2, 3), cap=0.0)
    with pytest.raises(ValueError, match=r"`rollout_logprobs` has shape \(2, 2\)"):
        tis_weights(a, a[:, :2], torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"`learner_logprobs` must be a \[B, T\] tensor"):
        mismatch_metrics(a[0], a[0], torch.ones(3))
    with pytest.raises(ValueError, match=r"`loss_mask` has shape"):
        mismatch_metrics(a, a, torch.ones(3, 2))
