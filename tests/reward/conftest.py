"""Fixtures of the reward tests: the real shared data (never copied into the repo) and a local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``$ASCL_DATA_DIR``, else ``<repo>/../shared/data``, else ``/work/shared/data``."""
    for c in (os.environ.get("ASCL_DATA_DIR"), _REPO.parent / "shared" / "data", "/work/shared/data"):
        if c and Path(c).is_dir():
            return Path(c)
    pytest.skip("shared data folder not found (set ASCL_DATA_DIR)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def math_warm():
    """Start the math-verify helper once (cold start is not part of any per-call deadline test)."""
    from ascl_ray.reward import math as rmath

    rmath.warmup(120)
    return rmath


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray instance for one test module (never `ray stop`)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
