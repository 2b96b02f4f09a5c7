"""The README's plug-in example, exactly as written there: a new estimator and a new tool in one module
outside the package, named in algorithm.plugins. Fast: registry, config and method context in process.
Slow: the README command itself (one iteration) through real Ray + vLLM + DeepSpeed, with the module
importable only through PYTHONPATH, so every actor that needs it must import it."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def example_code() -> str:
    m = re.search(r"<!-- plugin-example: my_plugins.py -->\n```python\n(.*?)```", README, re.S)
    assert m, "README: plug-in example block not found"
    return m.group(1)


def example_overrides() -> list[str]:
    m = re.search(r"<!-- plugin-command -->\n```bash\n(.*?)```", README, re.S)
    assert m, "README: plug-in command block not found"
    words = shlex.split(m.group(1).replace("\\\n", " "))
    assert words[0] == "PYTHONPATH=." and words[1].endswith("ascl-ray") and words[2] == "train", words[:3]
    return words[3:]


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "my_plugins.py").write_text(example_code())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    from ascl_ray.registry import get_registry

    sys.modules.pop("my_plugins", None)
    get_registry("advantage_estimator").unregister("grpo_clipped")
    get_registry("tool").unregister("define_term")


def test_readme_example_registers_and_configures(plugin_dir, tiny_tokenizer):
    from ascl_ray import algo
    from ascl_ray.cli import compose
    from ascl_ray.rollout.method import build_context

    cfg = compose(example_overrides())            # validation imports the plug-in and checks its names
    assert cfg.algorithm.name == "grpo_clipped" and cfg.method.tools == ["retrieve_safety_rules", "define_term"]
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1])
    out = algo.estimate(cfg.algorithm.name, r, g, torch.zeros(6, dtype=torch.bool),
                        options=dict(cfg.algorithm.options))
    # GRPO gives [1.5, -0.5, -0.5, -0.5] in group 0 (mean 0.25, std 0.5) and 0 in the uniform group 1
    assert torch.allclose(out.advantages, torch.tensor([1.0, -0.5, -0.5, -0.5, 0.0, 0.0]), atol=1e-5)

    ctx = build_context(cfg.method, tokenizer=tiny_tokenizer)
    assert [t.name for t in ctx.protocol.tools] == ["retrieve_safety_rules", "define_term"]
    turn, info = ctx.tool_turn_text('<tool_call>{"name": "define_term", "arguments": {"term": "IFPO"}}</tool_call>', 0)
    assert info["valid"] and info["tool"] == "define_term" and "inverse-frequency policy optimisation" in turn
    _, bad = ctx.tool_turn_text('<tool_call>{"name": "define_term", "arguments": {"word": "x"}}</tool_call>', 0)
    assert bad["malformed"] and "unexpected argument" in bad["error"]


@pytest.mark.slow
def test_readme_command_trains_one_iteration(tmp_path, tiny_model_path):
    (tmp_path / "my_plugins.py").write_text(example_code())
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "ascl_ray.cli", "train", *example_overrides(), f"model.path={tiny_model_path}",
           f"trainer.out_dir={out}", "trainer.iterations=1", "data.prompts_per_iter=4", "rollout.n_samples=4",
           "tracking.progress=false", "tracking.wandb_mode=disabled"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["algorithm"]["name"] == "grpo_clipped" and cfg["method"]["tools"][1] == "define_term"
    assert (out / "final" / "model.safetensors").exists()
