"""Import hygiene: only pool.py touches Ray; nothing here imports vllm or deepspeed."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import ascl_ray.reward as r
for name in ("verify_math", "detect_refusal", "score_rollout", "get_judge", "register_judge", "binary_metrics"):
    assert callable(getattr(r, name)), name
import ascl_ray.reward.math, ascl_ray.reward.refusal, ascl_ray.reward.judges, ascl_ray.reward.scoring
import ascl_ray.reward.judge_check, ascl_ray.reward.classifier, ascl_ray.reward.train_classifier
import ascl_ray.reward.data_io, ascl_ray.reward.testing, ascl_ray.reward.config
import ascl_ray.reward.judge_base, ascl_ray.reward.guard, ascl_ray.reward.guard_engine, ascl_ray.reward.heads
import ascl_ray.reward.sources, ascl_ray.reward.judge_study
bad = [m for m in ("ray", "vllm", "deepspeed") if m in sys.modules]
assert not bad, bad
assert "torch" not in sys.modules, "torch is imported lazily"
print("OK")
"""


def test_reward_imports_no_ray_vllm_deepspeed():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr


def test_unknown_export():
    import ascl_ray.reward as r

    try:
        r.nope  # noqa: B018
    except AttributeError as e:
        assert "nope" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
