"""CUDA paths of the pure core (every registered estimator and policy loss, KL, truncated IS) and of the
NCCL weight-sync transport (``sync/collective.py``): skipped without CUDA (the CPU CI); run on a GPU
machine with ``python tests/algo/test_algo_cuda.py`` (no pytest needed there) or pytest.

Each CUDA result must equal the CPU result of the same inputs and stay on the GPU (a silent host
round-trip or a CPU-only op in the core would show here)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # the repo, when run as a script

from ascl_ray import algo  # noqa: E402
from ascl_ray.registry import get_registry  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _batch(device):
    g = torch.Generator().manual_seed(0)
    B = 64
    rewards = (torch.rand(B, generator=g) > 0.5).float()
    gids = torch.arange(B) // 8
    modes = torch.rand(B, generator=g) > 0.4
    return rewards.to(device), gids.to(device), modes.to(device)


def test_estimators_match_cpu():
    for name in get_registry("advantage_estimator").names():
        outs = {}
        for dev in ("cpu", "cuda"):
            r, g, m = _batch(dev)
            outs[dev] = algo.estimate(name, r, g, m, options={}, state={})
        assert outs["cuda"].advantages.device.type == "cuda", name
        assert torch.allclose(outs["cuda"].advantages.cpu(), outs["cpu"].advantages, atol=1e-6), name
        for k, v in outs["cpu"].metrics.items():
            assert abs(outs["cuda"].metrics[k] - v) < 1e-6, (name, k)


def _tokens(device, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    B, T = 8, 24
    lp = (-torch.rand(B, T, generator=g) * 3).to(dtype)
    old = lp + 0.1 * torch.randn(B, T, generator=g).to(dtype)
    rollout = lp + 0.05 * torch.randn(B, T, generator=g).to(dtype)
    adv = torch.randn(B, generator=g)[:, None].expand(B, T).contiguous()
    mask = torch.rand(B, T, generator=g) > 0.2
    return [t.to(device) for t in (lp, old, rollout, adv, mask)]


def test_losses_kl_and_correction_match_cpu():
    res = {}
    for dev in ("cpu", "cuda"):
        lp, old, rollout, adv, mask = _tokens(dev)
        isw = algo.tis_weights(lp, rollout, mask, cap=2.0)
        out = {"tis": isw, "kl": algo.kl_estimate(lp, old, "k3")}
        for name in get_registry("policy_loss").names():
            loss, metrics = algo.get_policy_loss(name)(lp, old, adv, mask, agg="token-mean", is_weights=isw)
            out[name] = loss
            out[name + "/metrics"] = metrics
        out["mismatch"] = algo.mismatch_metrics(lp, rollout, mask)
        res[dev] = out
    for k, v in res["cpu"].items():
        w = res["cuda"][k]
        if isinstance(v, torch.Tensor):
            assert w.device.type == "cuda", k
            assert torch.allclose(w.cpu(), v, atol=1e-5), k
        else:
            for mk, mv in v.items():
                assert abs(float(w[mk]) - float(mv)) < 1e-5, (k, mk)


def test_nccl_transport_single_rank():
    """The NCCL group is built from a TCPStore + ProcessGroupNCCL (no default group) and rank 0 sends CUDA
    tensors; the digest equals the digest of the same tensors on the host. One GPU holds one rank only
    (NCCL refuses two ranks on one device), so the receiving side runs in the gloo tests on CPU."""
    from ascl_ray.sync import collective as C

    store, pg = C.new_group("127.0.0.1", C.free_port(), 0, 1, "nccl", timeout_s=60)
    dev = C.device_for("nccl")
    assert dev.type == "cuda"
    torch.manual_seed(0)
    state = {"embed.weight": torch.randn(50, 8), "layer.bias": torch.randn(8).to(torch.bfloat16),
             "scalar": torch.tensor(3.0), "empty": torch.zeros(0, 4)}
    state["lm_head.weight"] = state["embed.weight"]          # tied: sent once (an alias in the metadata)
    n, digest = C.send(store, pg, 1, state, dev)
    unique = {k: v for k, v in state.items() if k != "lm_head.weight"}
    assert n == sum(t.numel() * t.element_size() for t in unique.values())
    assert digest == C.tensors_digest(unique.items())
    on_dev = {k: v.to(dev) for k, v in unique.items()}
    on_dev["lm_head.weight"] = on_dev["embed.weight"]
    n2, digest2 = C.send(store, pg, 2, on_dev, dev)
    assert (n2, digest2) == (n, digest)


if __name__ == "__main__":
    for fn in (test_estimators_match_cpu, test_losses_kl_and_correction_match_cpu, test_nccl_transport_single_rank):
        fn()
        print("ok", fn.__name__, flush=True)
    print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
