"""Hydra multirun (`ascl-ray train -m`) and `ascl-ray compare` over runs and sweep folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ascl_ray import compare, sweep

REPO = Path(__file__).resolve().parents[2]


def _run_dir(root: Path, name: str, algo: str, seed: int, gaps: list[float], *, freq: str = "group",
             n: int = None, broken: bool = False) -> Path:
    d = root / name
    d.mkdir(parents=True)
    cfg = {"algorithm": {"name": algo, "options": {"freq_scope": freq}}, "trainer": {"seed": seed, "out_dir": str(d)},
           "tracking": {"run_name": None}}
    (d / "config.json").write_text(json.dumps(cfg))
    rows = []
    for t, g in enumerate(gaps[:n]):
        rows.append({"step": t, "reward/mean": 0.1 * t, "reward/needs_rules": 0.2 * t,
                     "consultation/needs_rules": 0.5 + g / 2, "consultation/no_rules": 0.5 - g / 2,
                     "consultation/targeting_gap": g, "rollout/malformed_call_rate": 0.0,
                     "consultation/gray_zone": 0.5 + g / 2, "consultation/math": 0.5 - g / 2})
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    if broken:
        text += '{"step": 99, "reward/me'          # a run cut off mid-write
    (d / "metrics.jsonl").write_text(text)
    return d


def test_compare_values_groups_and_incomplete_runs(tmp_path):
    sw = tmp_path / "sweep"
    _run_dir(sw, "0_grpo_s0", "grpo", 0, [0.0, 0.1, 0.2, 0.3])
    _run_dir(sw, "1_grpo_s1", "grpo", 1, [0.0, 0.2, 0.4, 0.5])
    _run_dir(sw, "2_ifpo_s0", "ifpo", 0, [0.0, 0.4, 0.6, 0.8])
    _run_dir(sw, "3_ifpo_batch_s0", "ifpo", 0, [0.0, 0.3, 0.3, 0.3], freq="batch")
    _run_dir(sw, "4_ifpo_s1_partial", "ifpo", 1, [0.0, 0.1, 0.2, 0.3], n=2)
    (sw / "5_failed").mkdir()
    (sw / "5_failed" / "train.log").write_text("Traceback ...\nFileNotFoundError: model.path\n")
    res = compare.compare([str(sw)], last=2)
    assert res["group_keys"] == ["algorithm.name", "algorithm.options.freq_scope"]
    g = res["groups"]
    grpo = g["algorithm.name=grpo, algorithm.options.freq_scope=group"]
    assert grpo["n_seeds"] == 2 and sorted(grpo["seeds"]) == [0, 1]
    # final gap = mean of the last 2 iterations per run: 0.25 and 0.45 -> mean 0.35, range [0.25, 0.45]
    assert grpo["final_targeting_gap"]["mean"] == pytest.approx(0.35)
    assert grpo["final_targeting_gap"]["min"] == pytest.approx(0.25)
    assert grpo["final_targeting_gap"]["max"] == pytest.approx(0.45)
    # AUC = mean over all iterations: (0+.1+.2+.3)/4 = .15 and (0+.2+.4+.5)/4 = .275
    assert grpo["auc_targeting_gap"]["mean"] == pytest.approx((0.15 + 0.275) / 2)
    assert grpo["final_reward"]["mean"] == pytest.approx(0.25)          # (0.2 + 0.3) / 2, both seeds
    ifpo = g["algorithm.name=ifpo, algorithm.options.freq_scope=group"]
    assert ifpo["n_seeds"] == 1 and ifpo["final_consult_needs_rules"]["mean"] == pytest.approx(0.5 + 0.7 / 2)
    bad = {Path(x["path"]).name: x["problem"] for x in res["incomplete"]}
    assert bad == {"4_ifpo_s1_partial": "partial: 2 of 4 iterations", "5_failed": "no config.json"}
    md = compare.to_markdown(res)
    assert "0.35 [0.25, 0.45]" in md and "4_ifpo_s1_partial: partial: 2 of 4 iterations" in md
    # explicit grouping: runs that differ only in keys outside the design fall into one group
    by_name = compare.compare([str(sw)], last=2, group_by=["algorithm.name"])
    assert by_name["groups"]["algorithm.name=ifpo"]["n_seeds"] == 2
    with pytest.raises(ValueError, match=r"--group-by: \['nope'\] is in no run's config.json"):
        compare.compare([str(sw)], group_by=["nope"])


def test_compare_cli_writes_outputs_and_survives_a_cut_off_run(tmp_path, capsys):
    a = _run_dir(tmp_path, "a", "grpo", 0, [0.0, 0.5])
    b = _run_dir(tmp_path, "b", "ifpo", 0, [0.0, 0.5], broken=True)
    out = tmp_path / "cmp"
    assert compare.main([str(a), str(b), "--out", str(out)]) == 0
    assert (out / "compare.png").stat().st_size > 5000
    js = json.loads((out / "compare.json").read_text())
    assert js["incomplete"] == [{"path": str(b), "problem": "metrics.jsonl line 3 is not JSON (run cut off?)"}]
    with pytest.raises(FileNotFoundError, match="holds no run"):
        compare.compare([str(tmp_path / "cmp")])


def test_sweep_expansion_and_names():
    runs, d = sweep.expand(["algorithm=grpo,ifpo", "trainer.seed=range(0,2)", "trainer.iterations=3",
                            "hydra.sweep.dir=/tmp/x"])
    assert d == "/tmp/x"
    assert runs == [["algorithm=grpo", "trainer.seed=0", "trainer.iterations=3"],
                    ["algorithm=grpo", "trainer.seed=1", "trainer.iterations=3"],
                    ["algorithm=ifpo", "trainer.seed=0", "trainer.iterations=3"],
                    ["algorithm=ifpo", "trainer.seed=1", "trainer.iterations=3"]]
    assert sweep.run_name(2, runs[2], {"algorithm", "trainer.seed"}) == "2_algorithm-ifpo_seed-0"
    # the name goes into a trainer.out_dir override: nothing Hydra's grammar would reject
    assert sweep.run_name(0, ["model.path=/a b/c,d='x'"], {"model.path"}) == "0_path--a-b-c-d--x-"
    from ascl_ray.config import ConfigError

    with pytest.raises(ConfigError, match="multirun overrides"):
        sweep.expand(["algorithm=grpo,,"])
    with pytest.raises(ConfigError, match="trainer.out_dir: set by the sweep"):
        sweep.run_sweep(["trainer.seed=0,1", "trainer.out_dir=x"], dry_run=True, log=lambda *_: None)


@pytest.mark.slow
def test_multirun_runs_each_reports_a_failure_and_continues(tiny_model_path, tmp_path):
    """`ascl-ray train -m`: 2 runs x 1 iteration, the first made to fail (no model there); the second
    still runs; the sweep exits non-zero and names the failure; compare reads the sweep folder."""
    sw = tmp_path / "sw"
    cmd = [sys.executable, "-m", "ascl_ray.cli", "train", "-m", f"model.path=/nonexistent/model,{tiny_model_path}",
           "model.build_tiny=false", "trainer.iterations=1", "tracking.progress=false", "data.prompts_per_iter=4",
           "rollout.n_samples=4", f"hydra.sweep.dir={sw}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((sw / "sweep.json").read_text())
    status = [x["status"] for x in rep["runs"]]
    assert status == ["failed", "ok"], rep
    assert any("model.path" in line for line in rep["runs"][0]["error_tail"])
    assert "1/2 runs ok" in r.stdout and "failed: [0]" in r.stdout
    ok = Path(rep["runs"][1]["out_dir"])
    assert len((ok / "metrics.jsonl").read_text().splitlines()) == 1
    res = compare.compare([str(sw)])
    assert [Path(x["path"]).name for x in res["incomplete"]] == [Path(rep["runs"][0]["out_dir"]).name]
