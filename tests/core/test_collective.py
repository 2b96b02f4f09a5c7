"""The collective weight-sync core (ascl_ray.sync.collective) on a real gloo group, no Ray."""

from __future__ import annotations

import threading

import pytest
import torch

from ascl_ray.sync import collective as C


def _run_group(world, fn):
    port = C.free_port()
    out, errs = {}, []

    def member(rank):
        try:
            store, pg = C.new_group("127.0.0.1", port, rank, world, "gloo", timeout_s=60)
            out[rank] = fn(rank, store, pg)
        except Exception as e:  # noqa: BLE001 - surfaced below
            errs.append(e)

    th = [threading.Thread(target=member, args=(r,)) for r in range(world)]
    [t.start() for t in th]
    [t.join(120) for t in th]
    assert not errs, errs
    return out


def test_broadcast_round_trips_every_tensor_and_digest():
    torch.manual_seed(0)
    state = {"embed.weight": torch.randn(50, 8), "layer.bias": torch.randn(8).to(torch.bfloat16),
             "scalar": torch.tensor(3.0), "empty": torch.zeros(0, 4)}
    state["lm_head.weight"] = state["embed.weight"]          # tied: sent once, restored under both names

    def fn(rank, store, pg):
        res = []
        for version in (1, 2):
            if rank == 0:
                res.append(C.send(store, pg, version, state))
            else:
                res.append(C.receive(store, pg, version, torch.device("cpu")))
        return res

    from ascl_ray.sync.payload import with_aliases

    out = _run_group(3, fn)
    for version in range(2):
        n, digest = out[0][version]
        assert n == sum(t.numel() * t.element_size() for k, t in state.items() if k != "lm_head.weight")
        for rank in (1, 2):
            items, got, aliases = out[rank][version]
            assert got == digest and aliases == {"lm_head.weight": "embed.weight"}
            assert [k for k, _ in items] == [k for k in state if k != "lm_head.weight"]
            full = with_aliases(items, aliases)
            assert [k for k, _ in full] == list(state)
            for k, t in full:
                assert t.dtype == state[k].dtype and torch.equal(t, state[k])
            assert dict(full)["lm_head.weight"] is dict(full)["embed.weight"]   # one tensor, two names


def test_digest_sees_names_dtypes_shapes_and_values():
    a = torch.arange(6.0)
    d = C.tensors_digest([("w", a)])
    assert d == C.tensors_digest([("w", a.clone())])
    assert d != C.tensors_digest([("v", a)])
    assert d != C.tensors_digest([("w", a.reshape(2, 3))])
    assert d != C.tensors_digest([("w", a.double())])
    b = a.clone()
    b[3] += 1e-6
    assert d != C.tensors_digest([("w", b)])


def test_bad_backend_and_metadata_are_clear_errors():
    with pytest.raises(ValueError, match="backend 'mpi'"):
        C.new_group("127.0.0.1", C.free_port(), 0, 1, "mpi")
    with pytest.raises(ValueError, match="unknown dtype"):
        C._dtype("torch.notatype")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA build"):
            C.new_group("127.0.0.1", C.free_port(), 0, 1, "nccl", timeout_s=5)


def test_collective_core_imports_neither_ray_vllm_nor_deepspeed():
    import subprocess
    import sys

    code = ("import sys, ascl_ray.sync.collective, ascl_ray.config\n"
            "bad = [m for m in ('ray', 'vllm', 'deepspeed') if m in sys.modules]\n"
            "assert not bad, bad\nprint('OK')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
