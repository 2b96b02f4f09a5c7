"""Policy losses and aggregation: references, exact masking, analytic gradients, gradcheck, errors."""

import math

import pytest
import torch

from ascl_ray.algo import agg_loss, get_policy_loss

F64 = torch.float64
LOSSES = ["ppo_clip", "dual_clip", "reinforce"]
AGGS = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"]


def make_inputs(seed, B=4, T=6, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    lp = -torch.rand(B, T, generator=gen, dtype=dtype) * 3
    old = lp + (torch.rand(B, T, generator=gen, dtype=dtype) - 0.5) * 1.6  # ratios in ~[0.45, 2.2]
    adv = torch.randn(B, generator=gen, dtype=dtype)
    mask = torch.rand(B, T, generator=gen) < 0.7
    mask[0] = False  # one sequence without trainable tokens
    mask[1, 0] = True
    return lp, old, adv, mask


# ----------------------------------------------------------------------------- python references
def ref_token_loss(name, lp, old, a, clip_low=0.2, clip_high=0.2, clip_c=3.0):
    if name == "reinforce":
        return -a * lp
    r = math.exp(lp - old)
    clipped = min(max(r, 1 - clip_low), 1 + clip_high)
    ppo = max(-a * r, -a * clipped)
    if name == "dual_clip" and a < 0:
        return min(ppo, -a * clip_c)
    return ppo


def ref_agg(per_token, mask, mode):
    """per_token, mask: nested python lists."""
    if mode == "token-mean":
        vals = [x for row, mrow in zip(per_token, mask) for x, m in zip(row, mrow) if m]
        return sum(vals) / len(vals) if vals else 0.0
    seqs = []
    for row, mrow in zip(per_token, mask):
        vals = [x for x, m in zip(row, mrow) if m]
        if vals:
            seqs.append(sum(vals) / (len(vals) if mode == "seq-mean-token-mean" else 1))
    return sum(seqs) / len(seqs) if seqs else 0.0


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("clips", [(0.2, 0.2), (0.2, 0.28), (0.1, 0.5)])
def test_loss_matches_python_reference(name, agg, seed, clips):
    lp, old, adv, mask = make_inputs(seed)
    per_tok = adv[:, None].expand_as(lp) if seed % 2 else adv  # [B] or [B, T] advantages
    opts = {} if name == "reinforce" else {"clip_low": clips[0], "clip_high": clips[1]}
    loss, metrics = get_policy_loss(name)(lp, old, per_tok, mask, agg=agg, **opts)
    ref_tok = [
        [ref_token_loss(name, lp[b, t].item(), old[b, t].item(), adv[b].item(), *clips) for t in range(lp.shape[1])]
        for b in range(lp.shape[0])
    ]
    assert loss.item() == pytest.approx(ref_agg(ref_tok, mask.tolist(), agg), rel=1e-12, abs=1e-12)
    assert metrics["pg_loss"] == pytest.approx(loss.item())
    assert metrics["n_tokens"] == float(mask.sum())
    assert all(type(v) is float for v in metrics.values())


def test_agg_loss_hand_example():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    m = torch.tensor([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert agg_loss(x, m, "token-mean").item() == pytest.approx(9 / 3)
    assert agg_loss(x, m, "seq-mean-token-sum").item() == pytest.approx((3 + 6) / 2)
    assert agg_loss(x, m, "seq-mean-token-mean").item() == pytest.approx((1.5 + 6) / 2)
    assert agg_loss(x, m, "token-mean", denom=6).item() == pytest.approx(9 / 6)
    assert agg_loss(x, m, "seq-mean-token-sum", denom=3).item() == pytest.approx(9 / 3)
    assert agg_loss(x, m.bool(), "token-mean").item() == pytest.approx(3.0)


def test_ppo_clip_metrics_and_clip_higher():
    lp = torch.log(torch.tensor([[1.25, 0.7, 1.0, 1.1]], dtype=F64))
    old = torch.zeros(1, 4, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0]])
    loss_fn = get_policy_loss("ppo_clip")
    # A > 0: ratio 1.25 is clipped at 1.2, ratio 0.7 is not (the unclipped -A r is larger)
    _, m = loss_fn(lp, old, torch.ones(1), mask)
    assert m["clipfrac"] == pytest.approx(1 / 3)
    assert m["ratio_mean"] == pytest.approx((1.25 + 0.7 + 1.0) / 3)
    assert m["ratio_max"] == pytest.approx(1.25)
    # clip-higher: with clip_high=0.28, ratio 1.25 is inside the trust region
    loss, m = loss_fn(lp, old, torch.ones(1), mask, clip_high=0.28)
    assert m["clipfrac"] == 0.0 and loss.item() == pytest.approx(-(1.25 + 0.7 + 1.0) / 3)
    # A < 0: ratio 0.7 is clipped at 0.8 (pessimistic bound), ratio 1.25 is not
    loss, m = loss_fn(lp, old, -torch.ones(1), mask)
    assert m["clipfrac"] == pytest.approx(1 / 3) and loss.item() == pytest.approx((1.25 + 0.8 + 1.0) / 3)


def test_dual_clip_bounds_negative_advantage():
    lp = torch.log(torch.tensor([[10.0, 2.0, 10.0]], dtype=F64)).requires_grad_()
    old = torch.zeros(1, 3, dtype=F64)
    adv = torch.tensor([[-1.0, -1.0, 1.0]], dtype=F64)
    loss, m = get_policy_loss("dual_clip")(lp, old, adv, torch.ones(1, 3), clip_c=3.0)
    # tokens: A<0, r=10 -> min(10, 3) = 3 ; A<0, r=2 -> 2 ; A>0, r=10 -> -1.2
    assert loss.item() == pytest.approx((3 + 2 - 1.2) / 3)
    assert m["clipfrac_lower"] == pytest.approx(1 / 3)
    loss.backward()
    assert lp.grad[0, 0] == 0 and lp.grad[0, 2] == 0 and lp.grad[0, 1] == pytest.approx(2 / 3)
    ppo, _ = get_policy_loss("ppo_clip")(lp, old, adv, torch.ones(1, 3))
    assert ppo.item() == pytest.approx((10 + 2 - 1.2) / 3)


# ----------------------------------------------------------------------------- exact masking
GARBAGE = [1e30, -1e30, float("inf"), float("-inf"), float("nan"), 88.0]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("token_adv", [False, True])
def test_masked_tokens_change_neither_loss_nor_gradient(name, agg, garbage, token_adv):
    lp, old, adv, mask = make_inputs(3, dtype=torch.float32)
    adv_in = adv[:, None].expand_as(lp).clone() if token_adv else adv
    isw = torch.rand(lp.shape, generator=torch.Generator().manual_seed(1)) + 0.5

    def run(lp_v, old_v, adv_v, isw_v):
        x = lp_v.clone().requires_grad_()
        loss, _ = get_policy_loss(name)(x, old_v, adv_v, mask.float(), agg=agg, is_weights=isw_v)
        loss.backward()
        return loss.detach(), x.grad

    for with_isw in (False, True):
        base_loss, base_grad = run(lp, old, adv_in, isw if with_isw else None)
        lp2, old2, isw2 = lp.clone(), old.clone(), isw.clone()
        lp2[~mask], old2[~mask], isw2[~mask] = garbage, -garbage if garbage == garbage else garbage, garbage
        adv2 = adv_in.clone()
        if token_adv:
            adv2[~mask] = garbage
        loss2, grad2 = run(lp2, old2, adv2, isw2 if with_isw else None)
        assert torch.isfinite(base_loss) and torch.equal(loss2, base_loss)
        assert torch.equal(grad2, base_grad)
        assert torch.equal(grad2[~mask], torch.zeros_like(grad2[~mask]))
        assert (grad2[mask] != 0).any()


@pytest.mark.parametrize("agg", AGGS)
def test_agg_loss_masked_garbage(agg):
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    base = agg_loss(x, mask, agg)
    y = x.detach().clone()
    y[mask == 0] = float("inf")
    y.requires_grad_()
    out = agg_loss(y, mask, agg)
    out.backward()
    assert torch.equal(out.detach(), base.detach())
    assert torch.equal(y.grad[mask == 0], torch.zeros(int((mask == 0).sum()), dtype=F64))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("shape", [(3, 5), (0, 5), (2, 0)])
def test_empty_mask_gives_zero_loss_with_grad(name, agg, shape):
    lp = torch.full(shape, float("nan")).requires_grad_()
    loss, metrics = get_policy_loss(name)(lp, torch.zeros(shape), torch.ones(shape[0]), torch.zeros(shape), agg=agg)
    assert loss.item() == 0.0 and loss.requires_grad and loss.dim() == 0
    loss.backward()
    assert torch.equal(lp.grad, torch.zeros(shape))
    assert all(math.isfinite(v) for v in metrics.values())


# ----------------------------------------------------------------------------- gradients
def analytic_dloss_dlp(name, r, a, clip_low, clip_high, clip_c):
    """d(per-token loss)/d(logprob) by hand, case by case (d r / d lp = r)."""
    if name == "reinforce":
        return -a
    if a > 0:
        return 0.0 if r > 1 + clip_high else -a * r  # above the trust region the bound is constant
    if a < 0:
        if r < 1 - clip_low:
            return 0.0  # pessimistic bound -A(1-clip_low) is constant
        if name == "dual_clip" and r > clip_c:
            return 0.0  # dual clip bound -A clip_c is constant
        return -a * r
    return 0.0


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("clips", [(0.2, 0.2), (0.2, 0.28)])
def test_gradient_wrt_softmax_logits_matches_analytic(name, agg, clips):
    """Toy softmax policy: lp = z[a] - logsumexp(z); dlp/dz = onehot(a) - softmax(z)."""
    gen = torch.Generator().manual_seed(11)
    B, T, V = 5, 7, 4
    clip_c = 3.0
    z = torch.randn(B, T, V, generator=gen, dtype=F64, requires_grad=True)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    lp = torch.log_softmax(z, -1).gather(-1, tokens[..., None]).squeeze(-1)
    log_r = torch.empty(B, T, dtype=F64).uniform_(math.log(0.3), math.log(4.5), generator=gen)
    adv = torch.randn(B, generator=gen, dtype=F64)
    mask = torch.rand(B, T, generator=gen) < 0.75
    mask[2] = False
    # make sure every region occurs: A < 0 with r far above 1 + clip_high (and above clip_c),
    # A > 0 with r above the trust region, A < 0 with r below it
    adv[0], adv[1], adv[3] = -abs(adv[0]), abs(adv[1]), -abs(adv[3])
    log_r[0, :2], log_r[1, :2], log_r[3, :2] = math.log(5.0), math.log(1.5), math.log(0.5)
    mask[[0, 1, 3], :2] = True
    old = lp.detach() - log_r
    opts = {} if name == "reinforce" else {"clip_low": clips[0], "clip_high": clips[1]}
    if name == "dual_clip":
        opts["clip_c"] = clip_c
    loss, _ = get_policy_loss(name)(lp, old, adv, mask, agg=agg, **opts)
    (grad,) = torch.autograd.grad(loss, z)

    probs = torch.softmax(z.detach(), -1)
    n_tok = int(mask.sum())
    n_seq = int((mask.sum(-1) > 0).sum())
    want = torch.zeros(B, T, V, dtype=F64)
    regions = set()
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            r = math.exp(log_r[b, t].item())
            g = analytic_dloss_dlp(name, r, adv[b].item(), clips[0], clips[1], clip_c)
            regions.add(g == 0.0)
            if name == "dual_clip" and adv[b] < 0 and r > clip_c:
                regions.add("dual")
            scale = {"token-mean": 1 / n_tok, "seq-mean-token-sum": 1 / n_seq,
                     "seq-mean-token-mean": 1 / (n_seq * int(mask[b].sum()))}[agg]
            onehot = torch.zeros(V, dtype=F64)
            onehot[tokens[b, t]] = 1.0
            want[b, t] = scale * g * (onehot - probs[b, t])
    if name != "reinforce":
        assert {True, False} <= regions, "test must cover tokens inside and outside the clip region"
    if name == "dual_clip":
        assert "dual" in regions, "test must cover the dual-clip region"
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("agg", AGGS)
def test_gradcheck_float64(name, agg):
    lp, old, adv, mask = make_inputs(5, B=3, T=4)
    isw = torch.rand(3, 4, dtype=F64, generator=torch.Generator().manual_seed(2)) + 0.5
    fn = get_policy_loss(name)
    x = lp.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y: fn(y, old, adv, mask, agg=agg, is_weights=isw)[0], (x,))


@pytest.mark.parametrize("agg", AGGS)
def test_agg_loss_gradcheck(agg):
    x = torch.randn(3, 5, dtype=F64, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.autograd.gradcheck(lambda y: agg_loss(y, mask, agg), (x,))


def test_is_weights_multiply_and_are_detached():
    lp, old, adv, mask = make_inputs(7)
    isw = (torch.rand(lp.shape, dtype=F64) + 0.5).requires_grad_()
    x = lp.clone().requires_grad_()
    loss, m = get_policy_loss("reinforce")(x, old, adv, mask, is_weights=isw)
    want = agg_loss(-adv[:, None] * lp * isw.detach(), mask)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    assert m["is_weight_mean"] == pytest.approx(isw.detach()[mask].mean().item())
    loss.backward()
    assert isw.grad is None and x.grad is not None


def test_old_logprobs_and_advantages_are_detached():
    lp, old, adv, mask = make_inputs(8)
    old, adv = old.clone().requires_grad_(), adv.clone().requires_grad_()
    x = lp.clone().requires_grad_()
    loss, _ = get_policy_loss("ppo_clip")(x, old, adv, mask)
    loss.backward()
    assert old.grad is None and adv.grad is None


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", LOSSES)
def test_shape_errors_name_the_argument(name):
    fn = get_policy_loss(name)
    lp, old, adv, mask = make_inputs(0)
    with pytest.raises(ValueError, match=r"`old_logprobs` has shape \(4, 5\)"):
        fn(lp, old[:, :5], adv, mask)
    with pytest.raises(ValueError, match=r"`advantages` has shape \(3,\)"):
        fn(lp, old, adv[:3], mask)
    with pytest.raises(ValueError, match=r"`loss_mask` has shape \(4, 2\)"):
        fn(lp, old, adv, mask[:, :2])
    with pytest.raises(ValueError, match=r"`is_weights` has shape"):
        fn(lp, old, adv, mask, is_weights=torch.ones(4))
    with pytest.raises(ValueError, match=r"`logprobs` must be a \[B, T\] tensor"):
        fn(lp[0], old[0], adv, mask[0])
    with pytest.raises(ValueError, match=r"`loss_mask` must contain only 0/1"):
        fn(lp, old, adv, mask.double() * 0.5)
    with pytest.raises(ValueError, match=r"unknown agg mode 'seq-mean'"):
        fn(lp, old, adv, mask, agg="seq-mean")
    with pytest.raises(ValueError, match=r"`denom`"):
        fn(lp, old, adv, mask, agg_denom=0)


@pytest.mark.parametrize(
    "name, opts, pattern",
    [
        ("ppo_clip", {"clip_low": -0.1}, "clip_low"),
        ("ppo_clip", {"clip_low": 1.0}, "clip_low"),
        ("ppo_clip", {"clip_high": float("nan")}, "clip_high"),
        ("dual_clip", {"clip_c": 1.0}, "clip_c"),
        ("ppo_clip", {"clip_ratio": 0.2}, "clip_ratio"),  # unknown option
    ],
)
def test_bad_loss_options(name, opts, pattern):
    lp, old, adv, mask = make_inputs(0)
    with pytest.raises((ValueError, TypeError), match=pattern):
        get_policy_loss(name)(lp, old, adv, mask, **opts)
