"""The runtime stack: Ray, the model folder, and the actor set of a run, built from the typed config.

    stack = build_stack(cfg, learners=True, rollout=True, reward=True)   # every entry point uses this
    stack.learners / stack.rollout / stack.pool / stack.sync             # None when not asked for
    stack.close()                                                        # ends all of them (and a Ray it started)

train, sft, eval, cada-chains and bench all build their actors here, so placement, plugins and
shutdown are the same everywhere. Each group reserves its bundles in a placement group before its actors
start (``ascl_ray/placement.py``; custom ``resources`` per group pin it to nodes). ``algorithm.plugins`` are imported in this process and in every actor.
The parts (``make_learners``, ``make_rollout``, ``make_reward_pool``) take the typed config objects and
pass them to the actors as they are (no dicts, no defaults re-declared).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ascl_ray.batch import PromptRow, Rollout
from ascl_ray.config import AlgorithmCfg, MethodCfg, RolloutCfg, TrainConfig, to_dict
from ascl_ray.registry import import_plugins

log = logging.getLogger("ascl_ray")

__all__ = ["Stack", "build_stack", "make_learners", "make_rollout", "make_reward_pool", "start_ray",
           "ensure_model", "load_prompts", "score", "pad_id", "MODEL_BUILDERS"]


def load_prompts(cfg: TrainConfig) -> tuple[list[PromptRow], list[PromptRow]]:
    """(train rows, eval rows) of ``data``; a bad row fails here, naming it, before anything heavy starts."""
    from ascl_ray.data import synthetic

    d = cfg.data
    if d.source == "synthetic":
        rows = synthetic.synthetic_prompts(n_math=d.n_math, seed=cfg.trainer.seed)
    else:
        if not os.path.exists(d.path):
            raise FileNotFoundError(f"data.path: file not found: {d.path}")
        rows = synthetic.read_prompts_jsonl(d.path)
    if d.types is not None:
        rows = [r for r in rows if r.prompt_type in set(d.types)]
        if not rows:
            raise ValueError(f"data.types={list(d.types)}: no prompt of these types in {d.path or d.source}")
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
        # a Ray of our own: with no address ray.init would join any cluster another process on this machine
        # started (it reads /tmp/ray/ray_current_cluster) and run our actors there
        kw["address"] = "local"
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


def pad_id(tok: Any) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def score(pool: Any, rollouts: list[Rollout]) -> None:
    """Reward every rollout in place with the reward pool (``reward``, ``reward_info``)."""
    items = [{"prompt_text": r.prompt.text, "prompt_type": r.prompt.prompt_type, "final_text": r.final_text,
              "reference": r.prompt.reference, "math_kind": r.prompt.math_kind, "malformed_call": r.malformed_call,
              "consulted": r.consulted, "expected": r.expected_verdict} for r in rollouts]
    for r, res in zip(rollouts, pool.score(items)):
        r.reward = float(res["reward"])
        r.reward_info = {"valid": bool(res.get("valid", True)), **(res.get("info") or {})}


# ---------------------------------------------------------------------------------------------- the parts
def make_learners(cfg: TrainConfig, model_path: str, *, algorithm: Optional[AlgorithmCfg] = None,
                  grad_accum: Optional[int] = None, pad: Optional[int] = None) -> Any:
    """The DeepSpeed learner group (``learner`` + ``algorithm``; SFT passes its own algorithm/grad_accum)."""
    from ascl_ray.learner.actor import LearnerGroup

    if pad is None:
        from transformers import AutoTokenizer

        pad = pad_id(AutoTokenizer.from_pretrained(model_path))
    for attempt in range(3):
        try:
            return LearnerGroup(model_path, cfg.learner, algorithm or cfg.algorithm,
                                cfg.grad_accum if grad_accum is None else grad_accum, pad,
                                placement_timeout_s=cfg.cluster.placement_timeout_s)
        except Exception as e:  # noqa: BLE001 - only the rendezvous-port race is retried
            # the rendezvous port is found free on rank 0's node, then bound by rank 0's TCPStore: another
            # process can take it in between (EADDRINUSE); a fresh group picks a fresh port
            if attempt == 2 or not any(s in str(e) for s in ("EADDRINUSE", "Address already in use")):
                raise
            log.warning("learner group start: rendezvous port taken (%s); retrying with another port",
                        str(e).splitlines()[0][:200])
    raise AssertionError("unreachable")


def make_rollout(cfg: TrainConfig, model_path: str, *, method: Optional[MethodCfg] = None,
                 rollout: Optional[RolloutCfg] = None, seed: Optional[int] = None) -> Any:
    """The vLLM rollout group running ``method`` (default ``cfg.method``; eval and CADA pass their own)."""
    from ascl_ray.rollout.worker import RolloutGroup

    return RolloutGroup(model_path, rollout or cfg.rollout, method or cfg.method,
                        cfg.trainer.seed if seed is None else seed, plugins=tuple(cfg.algorithm.plugins),
                        placement_timeout_s=cfg.cluster.placement_timeout_s)


def make_reward_pool(cfg: TrainConfig) -> Any:
    from ascl_ray.reward.pool import RewardPool

    return RewardPool(cfg.reward, plugins=tuple(cfg.algorithm.plugins), placement_timeout_s=cfg.cluster.placement_timeout_s)


@dataclass
class Stack:
    """The actors of one run; ``close()`` ends them in reverse order of start and a Ray this stack started."""

    cfg: TrainConfig
    model_path: str
    learners: Any = None
    rollout: Any = None
    pool: Any = None
    sync: Any = None
    started_ray: bool = False

    def replace_rollout(self, method: Optional[MethodCfg] = None, rollout: Optional[RolloutCfg] = None,
                        seed: Optional[int] = None) -> Any:
        """Close the rollout group and start one for another method (eval runs several in turn)."""
        if self.rollout is not None:
            self.rollout.close()
            self.rollout = None
        self.rollout = make_rollout(self.cfg, self.model_path, method=method, rollout=rollout, seed=seed)
        return self.rollout

    def close(self, keep_ray: bool = False) -> None:
        """End every part; ``keep_ray``: leave a Ray this stack started running (a rebuild after a failure)."""
        for name in ("sync", "pool", "rollout", "learners"):
            part = getattr(self, name)
            if part is None:
                continue
            try:
                part.close()
            except Exception as e:  # noqa: BLE001 - keep shutting the rest down
                log.warning("shutdown of %s failed: %s", name, e)
            setattr(self, name, None)
        if self.started_ray and not keep_ray:
            import ray

            ray.shutdown()
            self.started_ray = False

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def build_stack(cfg: TrainConfig, model_path: Optional[str] = None, *, learners: bool = True, rollout: bool = True,
                reward: bool = True, sync: Optional[bool] = None, method: Optional[MethodCfg] = None,
                rollout_cfg: Optional[RolloutCfg] = None, algorithm: Optional[AlgorithmCfg] = None,
                grad_accum: Optional[int] = None, default_num_cpus: Optional[int] = None,
                seed: Optional[int] = None) -> Stack:
    """Start Ray (unless up), import ``algorithm.plugins``, and build the asked-for parts from the typed
    config: learner group, rollout group, reward pool, and the ``trainer.sync_channel`` (default: when both
    learners and rollout are built). A part that fails to start closes the ones already up, then raises."""
    import_plugins(cfg.algorithm.plugins)
    model_path = model_path or ensure_model(cfg)
    stack = Stack(cfg, model_path, started_ray=start_ray(cfg, default_num_cpus))
    # the groups start at the same time (each reserves its own placement group, then waits for its actors):
    # start-up is the slowest group's (vLLM, usually), not the sum of the three
    parts = {name: fn for name, fn, wanted in (
        ("learners", lambda: make_learners(cfg, model_path, algorithm=algorithm, grad_accum=grad_accum), learners),
        ("rollout", lambda: make_rollout(cfg, model_path, method=method, rollout=rollout_cfg, seed=seed), rollout),
        ("pool", lambda: make_reward_pool(cfg), reward)) if wanted}
    errors: list[BaseException] = []
    if parts:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(parts)) as ex:
            futures = {name: ex.submit(fn) for name, fn in parts.items()}
            for name, fut in futures.items():
                try:
                    setattr(stack, name, fut.result())
                except BaseException as e:  # noqa: BLE001 - the parts that did start are closed below
                    errors.append(e)
    try:
        if errors:
            raise errors[0]
        if sync if sync is not None else (learners and rollout):
            from ascl_ray.sync.channels import make_sync_channel

            stack.sync = make_sync_channel(cfg.trainer.sync_channel, cfg.trainer.sync_backend)
    except BaseException:
        stack.close()
        raise
    return stack
