"""GPU recipes (conf/experiment/), `ascl-ray train --dry-run` against cluster shapes, and the batch-size rules.
Pure: compose + validate + the placement plan; no Ray, no model read (``ray``/``vllm`` are made unimportable)."""

from __future__ import annotations

import re
import sys

import pytest

from ascl_ray.cli import CONF_DIR, compose, main
from ascl_ray.config import ConfigError, check_batch_rules

# recipe -> (the shape it states, GPUs it needs, a shape one GPU node short)
RECIPES = {
    "qwen2_5_1_5b": ("1x8:64", 8, "1x4"),
    "r1_distill_qwen_7b": ("2x8:64", 16, "1x8"),
}


@pytest.fixture
def no_ray(monkeypatch):
    """``import ray`` / ``import vllm`` fail inside the test: the dry run must start nothing."""
    for mod in ("ray", "vllm"):
        monkeypatch.setitem(sys.modules, mod, None)


@pytest.mark.parametrize("name", sorted(RECIPES))
@pytest.mark.parametrize("form", ["+experiment", "experiment"])
def test_recipe_composes_and_validates(name, form):
    cfg = compose([f"{form}={name}"])
    shape, gpus, _ = RECIPES[name]
    assert cfg.model.name == name and not cfg.model.build_tiny and cfg.model.path.startswith("/models/")
    assert (cfg.method.name, cfg.algorithm.name) == ("ascl", "ifpo")
    assert (cfg.learner.backend, cfg.learner.dtype, cfg.rollout.dtype) == ("nccl", "bfloat16", "bfloat16")
    assert cfg.learner.num_gpus_per_actor == 1 and cfg.rollout.num_gpus_per_worker == cfg.rollout.tensor_parallel_size
    assert cfg.learner.num_actors * 1 + cfg.rollout.num_workers * cfg.rollout.tensor_parallel_size == gpus
    assert cfg.cluster.shape == shape and cfg.rollout.max_new_tokens >= 3072
    assert check_batch_rules(cfg.data.prompts_per_iter, cfg.rollout.n_samples, cfg.learner.num_actors,
                             cfg.learner.num_mini_batches) is None
    assert (CONF_DIR / "model" / f"{name}.yaml").is_file() and (CONF_DIR / "experiment" / f"{name}.yaml").is_file()
    assert cfg.rollout.gpu_memory_utilization == 0.85     # engines hold GPUs of their own in these plans


def test_r1_recipe_shape():
    cfg = compose(["+experiment=r1_distill_qwen_7b"])
    assert cfg.rollout.tensor_parallel_size == 2 and 4096 <= cfg.rollout.max_new_tokens <= 8192
    assert cfg.trainer.sync_channel == "object_store" and cfg.cluster.address == "auto"
    # command-line groups still win over the recipe's
    assert compose(["+experiment=r1_distill_qwen_7b", "cluster=local"]).cluster.address is None


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_dry_run_fits_stated_shape(name, no_ray, tmp_path, capsys):
    shape, gpus, _ = RECIPES[name]
    missing = tmp_path / "no-model-here"
    assert main(["train", f"+experiment={name}", f"model.path={missing}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"shape    {shape}" in out and "fits" in out and str(missing) in out
    for group in ("learner", "rollout", "reward"):
        assert re.search(rf"^  {group} +\d+  \{{CPU", out, re.M), out
    assert f"GPU={gpus}" in out and "node0 x" in out
    assert not missing.exists()
    # the same through an explicit --cluster-shape (both spellings)
    assert main(["train", f"+experiment={name}", "--dry-run", "--cluster-shape", shape]) == 0
    assert main(["train", f"+experiment={name}", "--dry-run", f"--cluster-shape={shape}"]) == 0


def test_dry_run_places_groups_on_nodes(no_ray, capsys):
    assert main(["train", "+experiment=r1_distill_qwen_7b", "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^  (learner|rollout|reward) .* (node\d x\d+)$", out, re.M)}
    assert rows["learner"] != rows["rollout"] and "x8" in rows["learner"] and "x4" in rows["rollout"]
    assert re.search(r"^  rollout +4  \{CPU: 6, GPU: 2\} +2  ", out, re.M)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_dry_run_too_small_shape_names_the_resource(name, no_ray, capsys):
    _, gpus, small = RECIPES[name]
    have = int(small.split("x")[0]) * int(small.split("x")[1])
    assert main(["train", f"+experiment={name}", "--dry-run", "--cluster-shape", small]) == 3
    cap = capsys.readouterr()
    assert f"cluster shape {small}: does not fit" in cap.err
    assert f"needs {gpus} GPU" in cap.err and f"has {have} GPU" in cap.err and "learner.num_actors" in cap.err
    assert "learner" in cap.out        # the plan still prints


def test_dry_run_cpu_short_and_bundle_too_big(no_ray, capsys):
    assert main(["train", "+experiment=r1_distill_qwen_7b", "--dry-run", "--cluster-shape", "2x8:16"]) == 3
    err = capsys.readouterr().err
    assert "needs 64 CPU" in err and "has 32 CPU" in err
    # 16 single-GPU nodes: enough GPUs in total, but a TP-2 engine needs 2 on one node
    assert main(["train", "+experiment=r1_distill_qwen_7b", "--dry-run", "--cluster-shape", "16x1"]) == 3
    err = capsys.readouterr().err
    assert "rollout: one vLLM engine (TP 2) needs 2 GPU on one node" in err and "rollout.num_gpus_per_worker" in err


def test_dry_run_without_shape_and_bad_flags(no_ray, capsys):
    assert main(["train", "--dry-run"]) == 0          # CPU defaults, no shape stated: fit not checked
    assert "fit not checked" in capsys.readouterr().out
    assert main(["train", "--dry-run", "--cluster-shape", "two-by-eight"]) == 2
    assert "NODESxGPUS" in capsys.readouterr().err
    assert main(["train", "--cluster-shape", "2x8"]) == 2          # only with --dry-run
    assert "--dry-run" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="cluster.shape"):
        compose(["cluster.shape=lots"])


def test_batch_rule_names_keys_and_values(no_ray, capsys):
    with pytest.raises(ConfigError) as e:
        compose(["+experiment=qwen2_5_1_5b", "learner.num_mini_batches=3"])
    msg = str(e.value)
    assert msg.startswith("data.prompts_per_iter:")
    for part in ("data.prompts_per_iter=32", "rollout.n_samples=8", "= 256 rows", "learner.num_actors=4",
                 "learner.num_mini_batches=3", "use learner.num_mini_batches=2 or 4"):
        assert part in msg, msg
    # the dry run reports it the same way, exit 2
    assert main(["train", "+experiment=qwen2_5_1_5b", "learner.num_mini_batches=3", "--dry-run"]) == 2
    assert "use learner.num_mini_batches=2 or 4" in capsys.readouterr().err


@pytest.mark.parametrize("prompts,g,ranks,mini", [(16, 8, 2, 3), (3, 3, 2, 1), (16, 8, 3, 2), (10, 6, 8, 1),
                                                  (32, 8, 8, 3), (7, 5, 6, 5)])
def test_every_suggested_fix_satisfies_the_rule(prompts, g, ranks, mini):
    msg = check_batch_rules(prompts, g, ranks, mini)
    assert msg is not None
    fixes = re.findall(r"(data\.prompts_per_iter|rollout\.n_samples|learner\.num_actors|learner\.num_mini_batches)="
                       r"(\d+(?: or \d+)*)", msg.split("; use ", 1)[1])
    assert fixes
    for key, values in fixes:
        for v in map(int, values.split(" or ")):
            args = dict(prompts=prompts, g=g, ranks=ranks, mini=mini)
            args[{"data.prompts_per_iter": "prompts", "rollout.n_samples": "g", "learner.num_actors": "ranks",
                  "learner.num_mini_batches": "mini"}[key]] = v
            assert check_batch_rules(args["prompts"], args["g"], args["ranks"], args["mini"]) is None, (key, v, msg)


def test_valid_batch_passes():
    assert check_batch_rules(16, 8, 2, 2) is None and check_batch_rules(32, 8, 8, 4) is None
    compose(["data.prompts_per_iter=6", "rollout.n_samples=4", "learner.num_mini_batches=3"])   # 24 = 2 x 3 x 4


def test_gpu_rules_name_the_fix():
    with pytest.raises(ConfigError, match=r"learner.num_gpus_per_actor: learner.backend=nccl needs one whole GPU"):
        compose(["learner=zero3_gpu", "learner.num_gpus_per_actor=0.5"])
    with pytest.raises(ConfigError, match=r"trainer.sync_channel: .*tensor_parallel_size=2.*sync_channel=object_store"):
        compose(["+experiment=r1_distill_qwen_7b", "trainer.sync_channel=collective"])


def test_help_lists_experiments(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "qwen2_5_1_5b" in out and "r1_distill_qwen_7b" in out and "--dry-run" in out
