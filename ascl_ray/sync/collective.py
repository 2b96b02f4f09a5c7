"""Weight broadcast over a torch.distributed process group of its own (no Ray import).

The ``collective`` sync channel (``ascl_ray.sync.channels``) joins learner rank 0 and every rollout
engine's worker in one small process group, separate from DeepSpeed's and vLLM's own groups:

    rank 0          learner rank 0 (holds the gathered ZeRO-3 weights, TCPStore master)
    rank 1..N       the vLLM workers (inside each engine process, via the worker extension)

Backend ``gloo`` on CPU (tensors broadcast from host memory) and ``nccl`` on GPU (tensors
broadcast from device memory, no host round-trip) share this code. The group is built directly
from a ``TCPStore`` + ``ProcessGroupGloo``/``ProcessGroupNCCL``, so neither side's default process
group is touched.

Each sync has a version number. Rank 0 publishes the metadata (names, shapes, dtypes) under
``meta/<version>`` in the store, then broadcasts the tensors in that order; receivers read the
metadata, allocate, receive, and both sides hash what they sent/received (``tensors_digest``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
from typing import Any, Iterable, Optional

import torch

BACKENDS = ("gloo", "nccl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def new_group(addr: str, port: int, rank: int, world_size: int, backend: str,
              timeout_s: float = 300.0) -> tuple[Any, Any]:
    """(store, process group). Blocks until all ``world_size`` members joined (or ``timeout_s``)."""
    import torch.distributed as dist

    if backend not in BACKENDS:
        raise ValueError(f"weight-sync backend {backend!r}: expected one of {BACKENDS}")
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(addr, port, world_size, rank == 0, timeout=timeout)
    if backend == "gloo":
        pg = dist.ProcessGroupGloo(store, rank, world_size, timeout)
    else:
        if not hasattr(dist, "ProcessGroupNCCL"):
            raise RuntimeError("weight-sync backend 'nccl' needs a CUDA build of torch")
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        pg = dist.ProcessGroupNCCL(store, rank, world_size, opts)
    return store, pg


def device_for(backend: str) -> torch.device:
    """Where the broadcast tensors live: the current CUDA device for NCCL, host memory for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _broadcast(pg: Any, t: torch.Tensor) -> None:
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    pg.broadcast([t], opts).wait()


def tensors_digest(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over (name, dtype, shape, bytes) of each tensor, in order."""
    h = hashlib.sha256()
    for name, t in named:
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        c = t.detach().contiguous()
        if c.device.type != "cpu":
            c = c.cpu()
        h.update(c.reshape(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b"")
    return h.hexdigest()


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"weight sync: unknown dtype {name!r} in the metadata")
    return dt


def send(store: Any, pg: Any, version: int, state: dict[str, torch.Tensor],
         device: Optional[torch.device] = None) -> tuple[int, str]:
    """Rank 0: publish metadata for ``version`` and broadcast ``state``, each tensor once (a tied weight is
    sent as an alias, ``ascl_ray.sync.payload``). Returns (bytes, digest of the tensors sent)."""
    from ascl_ray.sync.payload import split_aliases

    state, aliases = split_aliases(state)
    meta = [(k, list(v.shape), str(v.dtype)) for k, v in state.items()]
    store.set(f"meta/{version}", json.dumps({"tensors": meta, "aliases": aliases}))
    n = 0
    for k, v in state.items():
        t = v if device is None or v.device == device else v.to(device, non_blocking=False)
        _broadcast(pg, t.contiguous())
        n += t.numel() * t.element_size()
    return n, tensors_digest(state.items())


def receive(store: Any, pg: Any, version: int,
            device: torch.device) -> tuple[list[tuple[str, torch.Tensor]], str, dict[str, str]]:
    """Rank > 0: read the metadata for ``version`` and receive every tensor. Returns (items, digest, aliases):
    the caller restores the aliases (``payload.with_aliases``) before loading."""
    meta = json.loads(store.get(f"meta/{version}").decode())
    out: list[tuple[str, torch.Tensor]] = []
    for name, shape, dt in meta["tensors"]:
        t = torch.empty(shape, dtype=_dtype(dt), device=device)
        _broadcast(pg, t)
        out.append((name, t))
    return out, tensors_digest(out), dict(meta.get("aliases") or {})
