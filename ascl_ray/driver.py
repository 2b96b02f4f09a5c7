"""The RL loop, top to bottom:

    for it in range(iterations):
        prompts  = sampler.next_batch()                 # PromptRows with explicit group ids
        rollouts = rollout.generate(prompts)            # vLLM workers run the tool turn
        rewards  = reward_pool.score(rollouts)          # verifiers + judges, timeouts
        adv      = estimator(rewards, group_ids, modes) # algo/ (pure), e.g. IFPO
        stats    = learners.update(rollouts)            # DeepSpeed ZeRO-3
        sync.push(learners -> rollout); verify_sync()   # every iteration, verified
        tracker.log(...)
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Optional

from ascl_ray.batch import PROMPT_TYPES, PromptRow, Rollout
from ascl_ray.config import TrainConfig, to_dict

log = logging.getLogger("ascl_ray")


class PromptSampler:
    """Stratified by prompt type: each batch takes the types in turn (round robin), each type
    from its own epoch-shuffled list, so the batch mix (and the mean reward) does not swing with
    the draw. ``next_batch`` returns rows and fresh explicit group ids."""

    def __init__(self, rows: list[PromptRow], per_iter: int, seed: int):
        if not rows:
            raise ValueError("data: no training prompts")
        self.by_type = {t: [r for r in rows if r.prompt_type == t] for t in PROMPT_TYPES}
        self.by_type = {t: v for t, v in self.by_type.items() if v}
        self.per_iter, self.rng = per_iter, random.Random(seed)
        self.order: dict[str, list[int]] = {t: [] for t in self.by_type}
        self.turn = 0
        self.next_gid = 0

    def _draw(self, t: str) -> PromptRow:
        if not self.order[t]:
            self.order[t] = list(range(len(self.by_type[t])))
            self.rng.shuffle(self.order[t])
        return self.by_type[t][self.order[t].pop()]

    def next_batch(self) -> tuple[list[PromptRow], list[int]]:
        types = list(self.by_type)
        out = []
        for _ in range(self.per_iter):
            out.append(self._draw(types[self.turn % len(types)]))
            self.turn += 1
        gids = list(range(self.next_gid, self.next_gid + len(out)))
        self.next_gid += len(out)
        return out, gids

    def state_dict(self) -> dict:
        return {"order": self.order, "turn": self.turn, "next_gid": self.next_gid, "rng": self.rng.getstate()}


def load_prompts(cfg: TrainConfig) -> tuple[list[PromptRow], list[PromptRow]]:
    from ascl_ray.data import synthetic

    d = cfg.data
    if d.source == "synthetic":
        rows = synthetic.synthetic_prompts(n_math=d.n_math, seed=cfg.trainer.seed)
    else:
        if not os.path.exists(d.path):
            raise FileNotFoundError(f"data.path: file not found: {d.path}")
        rows = synthetic.read_prompts_jsonl(d.path)
    return synthetic.split(rows, eval_frac=d.eval_frac, seed=cfg.trainer.seed)


def start_ray(cfg: TrainConfig, default_num_cpus: Optional[int] = None) -> bool:
    """Start local Ray (or join ``cluster.address``) unless Ray is already up. True when this call
    started it (the caller then shuts it down).

    A local Ray gets the actors' environment as its runtime env. Joining an existing cluster (``ray job
    submit``: ``cluster.address=auto``) passes NO runtime env: the job's runtime env is the user's to set,
    and Ray refuses to merge a ``ray.init`` env that sets the same variables ("Failed to merge the Job's
    runtime env"). Actors then set their defaults themselves (``actor_env_defaults``)."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(namespace=cfg.cluster.namespace, include_dashboard=False)
    if cfg.cluster.address:
        kw["address"] = cfg.cluster.address
    else:
        from ascl_ray.resources import ACTOR_ENV

        env = {**ACTOR_ENV, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "VLLM_CPU_KVCACHE_SPACE": str(cfg.rollout.kv_cache_gib)}
        kw["runtime_env"] = {"env_vars": env}
        kw["num_cpus"] = cfg.cluster.num_cpus or default_num_cpus
    ray.init(**kw)
    return True


# model.name -> (module, function(path) -> folder, default path): models the project builds itself,
# once, when model.path is left at the default folder and it is missing
MODEL_BUILDERS = {"smollm2_135m": ("ascl_ray.models.smollm2", "ensure_smollm2",
                                   ".cache/models/smollm2-135m-instruct-float32")}


def ensure_model(cfg: TrainConfig) -> str:
    """The policy's model folder. With ``model.build_tiny`` the embedded tiny model is (re)built
    when missing or built with other settings (its ``ascl_build.json`` records them)."""
    path = cfg.model.path
    if cfg.model.build_tiny:
        from ascl_ray.data.tiny_model import build_spec, build_tiny_model

        spec = build_spec(to_dict(cfg)["method"], cfg.model.tiny_sft_steps, cfg.model.tiny_sft_noise, cfg.trainer.seed)
        stamp = Path(path) / "ascl_build.json"
        if not (stamp.exists() and json.loads(stamp.read_text()).get("spec") == spec):
            build_tiny_model(path, method_cfg=spec["method"], sft_steps=cfg.model.tiny_sft_steps,
                             sft_noise=cfg.model.tiny_sft_noise, seed=cfg.trainer.seed)
        return os.path.abspath(path)
    if os.path.exists(os.path.join(path, "config.json")):
        return os.path.abspath(path)
    if cfg.model.name in MODEL_BUILDERS:     # a model the project can build itself (once, cached)
        mod, fn, default = MODEL_BUILDERS[cfg.model.name]
        if os.path.abspath(path) == os.path.abspath(default):
            return os.path.abspath(str(getattr(importlib.import_module(mod), fn)(path)))
        raise FileNotFoundError(f"model.path: no model folder at {path!r} (config.json missing); "
                                f"leave model.path at {default} to convert {cfg.model.name} there, or run "
                                f"python -m {mod} --out {path}")
    is_hub_name = path.count("/") == 1 and not path.startswith((".", "/", "~")) and not os.path.exists(path)
    if is_hub_name and os.environ.get("HF_HUB_OFFLINE") != "1":
        return path  # cluster users may name a hub model
    raise FileNotFoundError(f"model.path: no model folder at {path!r} (config.json missing)")


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def group_metrics(rollouts: list[Rollout]) -> dict[str, float]:
    """Per-iteration rollout metrics. Consultation first: overall, per prompt type, on needs-rules vs
    no-rules prompts and their difference (``consultation/targeting_gap``); reward and advantage per
    mode (consult / direct) overall and per prompt type; malformed calls as a share of calls."""
    out: dict[str, float] = {}
    n = len(rollouts)
    out["reward/mean"] = _mean([r.reward for r in rollouts])
    out["consultation/rate"] = _mean([r.consulted for r in rollouts])
    for flag, name in ((True, "needs_rules"), (False, "no_rules")):
        sub = [r for r in rollouts if bool(r.prompt.needs_rules) == flag]
        if sub:
            out[f"consultation/{name}"] = _mean([r.consulted for r in sub])
            out[f"reward/{name}"] = _mean([r.reward for r in sub])
    if "consultation/needs_rules" in out and "consultation/no_rules" in out:
        out["consultation/targeting_gap"] = out["consultation/needs_rules"] - out["consultation/no_rules"]
    modes = ((True, "consult"), (False, "direct"))
    for t in PROMPT_TYPES:
        sub = [r for r in rollouts if r.prompt.prompt_type == t]
        if not sub:
            continue
        out[f"reward/{t}"] = _mean([r.reward for r in sub])
        out[f"consultation/{t}"] = _mean([r.consulted for r in sub])
        for mode, name in modes:
            part = [r for r in sub if r.consulted == mode]
            if part:
                out[f"reward/by_mode/{t}/{name}"] = _mean([r.reward for r in part])
                if all(r.advantage is not None for r in part):
                    out[f"advantage/by_mode/{t}/{name}"] = _mean([r.advantage for r in part])
    for mode, name in modes:
        sub = [r for r in rollouts if r.consulted == mode]
        if sub:
            out[f"reward/by_mode/{name}"] = _mean([r.reward for r in sub])
    calls = sum(r.n_calls for r in rollouts)
    out["rollout/malformed_call_rate"] = sum(r.malformed_call for r in rollouts) / calls if calls else 0.0
    out["rollout/response_tokens"] = _mean([len(r.response_ids) for r in rollouts])
    out["rollout/model_tokens"] = _mean([r.n_model_tokens for r in rollouts])
    out["rollout/tool_calls"] = sum(r.n_calls for r in rollouts) / n
    out["rollout/truncated_rate"] = _mean([r.truncated for r in rollouts])
    out["rollout/malformed_rate"] = _mean([r.malformed_call for r in rollouts])
    out["reward/invalid"] = float(sum(not r.reward_info.get("valid", True) for r in rollouts))
    return out


def score(pool: Any, rollouts: list[Rollout]) -> None:
    items = [{"prompt_text": r.prompt.text, "prompt_type": r.prompt.prompt_type, "final_text": r.final_text,
              "reference": r.prompt.reference, "math_kind": r.prompt.math_kind, "malformed_call": r.malformed_call,
              "consulted": r.consulted, "expected": r.expected_verdict} for r in rollouts]
    for r, res in zip(rollouts, pool.score(items)):
        r.reward = float(res["reward"])
        r.reward_info = {"valid": bool(res.get("valid", True)), **(res.get("info") or {})}


def compute_advantages(cfg: TrainConfig, rollouts: list[Rollout], state: dict) -> dict[str, float]:
    import torch

    from ascl_ray import algo

    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    gids = torch.tensor([r.group_id for r in rollouts], dtype=torch.long)
    modes = torch.tensor([r.consulted for r in rollouts], dtype=torch.bool)
    opts = dict(cfg.algorithm.options)
    est = algo.get_advantage_estimator(cfg.algorithm.name)
    if cfg.algorithm.name == "ifpo":
        opts["state"] = state
    adv = est(rewards, gids, modes, **opts)
    for r, a in zip(rollouts, adv.tolist()):
        r.advantage = float(a)
    types = [r.prompt.prompt_type for r in rollouts]
    w = None
    if cfg.algorithm.name == "ifpo":
        w = algo.ifpo_weights(gids, modes, **{k: v for k, v in opts.items() if k not in ("norm_std", "eps")})
    stats = algo.ifpo_stats(rewards, gids, modes, types, weights=w)
    out = {"consultation/groups_both_modes": stats["ifpo/groups_both_modes"]}
    out.update({k: v for k, v in stats.items() if k.startswith("ifpo/weight")})   # only when IFPO runs
    out["advantage/abs_mean"] = float(adv.abs().mean())
    return out


def probe_sequences(tok: Any, rows: list[PromptRow], system_text: Optional[str]) -> list[list[int]]:
    from ascl_ray.rollout.chat import encode_segment, prompt_ids

    return [prompt_ids(tok, r.text, system_text) + encode_segment(tok, "Sure. 2 + 2 = 4. #### 4") for r in rows[:2]]


class Trainer:
    """Owns the actors of one run. ``train()`` below is setup + ``step()`` per iteration + finish."""

    def __init__(self, cfg: TrainConfig):
        from transformers import AutoTokenizer

        from ascl_ray.rollout.method import build_context

        self.cfg = cfg
        self.t_start = time.perf_counter()
        self.train_rows, self.eval_rows = load_prompts(cfg)   # bad rows fail here, before anything heavy
        self.model_path = ensure_model(cfg)
        self.out_dir = Path(cfg.trainer.out_dir)
        self.cfg_dict = to_dict(cfg)
        self.tok = AutoTokenizer.from_pretrained(self.model_path)
        ctx = build_context(self.cfg_dict["method"], tokenizer=self.tok)
        self.probes = probe_sequences(self.tok, self.train_rows, ctx.system_text)
        self.learners = self.rollout = self.pool = self.tracker = None
        self.started_ray = start_ray(cfg)     # close() shuts down only a Ray this trainer started
        self.sampler = PromptSampler(self.train_rows, cfg.data.prompts_per_iter, cfg.trainer.seed)
        self.adv_state: dict = {}

    def setup(self) -> "Trainer":
        from ascl_ray.learner.actor import LearnerGroup
        from ascl_ray.learner.sync import make_sync_channel, verify_sync
        from ascl_ray.reward.pool import RewardPool
        from ascl_ray.rollout.worker import RolloutGroup
        from ascl_ray.tracking import Tracker

        cfg, d = self.cfg, self.cfg_dict
        t0 = time.perf_counter()
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.learners = LearnerGroup(self.model_path, d["learner"], d["algorithm"], cfg.grad_accum, pad)
        self.rollout = RolloutGroup(self.model_path, d["rollout"], d["method"], cfg.trainer.seed)
        self.pool = RewardPool(d["reward"])
        self.sync = make_sync_channel(cfg.trainer.sync_channel, cfg.trainer.sync_backend)
        self.startup_s = time.perf_counter() - t0
        log.info("actors up in %.1fs", self.startup_s)
        # the engine must start from exactly the learner's weights: verify before the first step
        if cfg.trainer.verify_sync:
            verify_sync(self.learners, self.rollout, self.probes, cfg.trainer.sync_tol)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(d, indent=2))
        self.tracker = Tracker(str(self.out_dir), d, mode=cfg.tracking.wandb_mode, project=cfg.tracking.project,
                               run_name=cfg.tracking.run_name, progress=cfg.tracking.progress,
                               total=cfg.trainer.iterations)
        return self

    def step(self, it: int) -> dict[str, float]:
        from ascl_ray.learner.sync import verify_sync
        from ascl_ray.tracking import PHASES, PhaseTimer

        cfg = self.cfg
        timer = PhaseTimer()
        t_it = time.perf_counter()
        rows, gids = self.sampler.next_batch()
        with timer("rollout"):
            rollouts = self.rollout.generate(rows, gids, seed=cfg.trainer.seed * 100_003 + it)
        with timer("reward"):
            score(self.pool, rollouts)
        extra: dict[str, float] = {}
        if cfg.algorithm.dynamic_sampling:
            rollouts, extra = self._dynamic_sampling(rollouts, it, timer)
        with timer("advantage"):
            metrics = compute_advantages(cfg, rollouts, self.adv_state)
            metrics.update(group_metrics(rollouts))
            metrics.update(extra)
        with timer("train"):
            metrics.update(self.learners.update(rollouts))
        with timer("sync"):
            rep = self.sync.push(self.learners, self.rollout)
            if cfg.trainer.verify_sync:
                metrics["sync/max_logprob_diff"] = verify_sync(self.learners, self.rollout, self.probes,
                                                               cfg.trainer.sync_tol)
        step = time.perf_counter() - t_it
        for ph in PHASES:
            metrics[f"timing/{ph}"] = timer.times.get(ph, 0.0)
            self.tracker.phase_done(ph, timer.times.get(ph, 0.0))
        metrics["timing/step"] = step
        work = sum(timer.times.get(p, 0.0) for p in ("rollout", "reward", "train", "sync"))
        metrics["timing/overhead_frac"] = max(0.0, step - work) / step
        metrics.update({"sync/bytes": rep.n_bytes, "sync/seconds": rep.seconds,
                        "sync/MBps": rep.n_bytes / 1e6 / max(rep.seconds, 1e-9),
                        "sync/load_seconds": rep.load_seconds, "sync/export_seconds": rep.export_seconds})
        self.tracker.log(metrics, step=it)
        return metrics

    def _dynamic_sampling(self, rollouts: list[Rollout], it: int, timer: Any) -> tuple[list[Rollout], dict]:
        """DAPO: drop groups whose rewards are all equal; refill with fresh groups (up to
        ``algorithm.dynamic_sampling_max_rounds`` extra rounds), else pad with dropped groups so the
        batch keeps its size (their advantages are 0)."""
        import torch

        from ascl_ray import algo

        want = self.cfg.data.prompts_per_iter
        kept: dict[int, list[Rollout]] = {}
        dropped: dict[int, list[Rollout]] = {}
        rounds = 0
        while True:
            keep = algo.filter_uniform_groups(torch.tensor([r.reward for r in rollouts]),
                                              torch.tensor([r.group_id for r in rollouts]))
            for r, k in zip(rollouts, keep.tolist()):
                (kept if k else dropped).setdefault(r.group_id, []).append(r)
            if len(kept) >= want or rounds >= self.cfg.algorithm.dynamic_sampling_max_rounds:
                break
            rounds += 1
            rows, gids = self.sampler.next_batch()
            with timer("rollout"):
                rollouts = self.rollout.generate(rows, gids, seed=self.cfg.trainer.seed * 100_003 + it + 7919 * rounds)
            with timer("reward"):
                score(self.pool, rollouts)
        groups = list(kept.values())[:want]
        n_informative = len(groups)
        groups += list(dropped.values())[: want - len(groups)]
        out = [r for g in groups for r in g]
        return out, {"dynamic_sampling/informative_groups": n_informative / want,
                     "dynamic_sampling/extra_rounds": float(rounds)}

    def save(self, name: str) -> str:
        return self.learners.save_hf(str(self.out_dir / name))

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.finish()
        for part in (getattr(self, "sync", None), self.pool, self.rollout, self.learners):
            if part is not None:
                try:
                    part.close() if hasattr(part, "close") else part.shutdown()
                except Exception as e:  # noqa: BLE001 - keep shutting the rest down
                    log.warning("shutdown of %s failed: %s", type(part).__name__, e)
        if getattr(self, "started_ray", False):
            import ray

            ray.shutdown()
            self.started_ray = False


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the loop; returns a summary (history, paths). Raises on any failed sync verification."""
    tr = Trainer(cfg)
    try:
        tr.setup()
        n = cfg.trainer.iterations
        for it in range(n):
            tr.step(it)
            if cfg.trainer.save_every and (it + 1) % cfg.trainer.save_every == 0 and it + 1 < n:
                tr.save(f"checkpoint-{it + 1}")
        final = tr.save("final")
        plot = tr.tracker.plot()
        summary = {"history": tr.tracker.history, "final_checkpoint": final, "plot": plot,
                   "startup_s": tr.startup_s, "total_s": time.perf_counter() - tr.t_start, "out_dir": str(tr.out_dir)}
        (tr.out_dir / "summary.json").write_text(
            json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
        return summary
    finally:
        tr.close()
