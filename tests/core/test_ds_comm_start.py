"""A learner's comm backend starts even when a killed process left torch's extension-build lock behind.

DeepSpeed's CPU torch backend JIT-builds a shared-memory all-reduce op at start-up through torch's
``FileBaton``; a stale ``lock`` file in the build folder made every later learner wait forever (a whole
test run hung). ``skip_shm_comm_op`` keeps the learners off that build. Both runs below are real
``deepspeed.init_distributed`` calls (gloo, one rank) in a fresh interpreter, with a stale lock in a
private torch-extensions folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    if sys.argv[1] == "skip":
        from ascl_ray.learner.policy import skip_shm_comm_op
        skip_shm_comm_op()
    import deepspeed
    deepspeed.init_distributed(dist_backend="gloo")
    import torch.distributed as dist
    print("STARTED", dist.get_world_size(), flush=True)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, mode: str, timeout: float) -> subprocess.CompletedProcess:
    ext = tmp_path / "torch_extensions"
    (ext / "deepspeed_shm_comm").mkdir(parents=True, exist_ok=True)
    (ext / "deepspeed_shm_comm" / "lock").touch()        # what a process killed mid-build leaves behind
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(ext), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_learner_comm_starts_despite_a_stale_build_lock(tmp_path):
    r = _start(tmp_path, "skip", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "STARTED 1" in r.stdout
    assert (tmp_path / "torch_extensions" / "deepspeed_shm_comm" / "lock").exists()   # still there, not needed


def test_without_the_skip_a_stale_lock_hangs_the_start(tmp_path):
    """The failure the skip exists for (DeepSpeed 0.19 pinned): if this stops hanging, the op is no longer
    built at start-up and ``skip_shm_comm_op`` can go."""
    with pytest.raises(subprocess.TimeoutExpired):
        _start(tmp_path, "build", timeout=30)
