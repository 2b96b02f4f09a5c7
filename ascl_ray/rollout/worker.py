"""Ray shell around a rollout engine + the multi-turn episode runner.

``RolloutGroup`` shards prompt groups over workers (whole groups stay on one worker) and
broadcasts weight updates to all of them.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import ray

from ascl_ray.batch import PromptRow, Rollout
from ascl_ray.config import MethodCfg, RolloutCfg

log = logging.getLogger("ascl_ray.rollout")


@ray.remote
class RolloutWorker:
    def __init__(self, model_path: str, rcfg: RolloutCfg, method_cfg: MethodCfg, seed: int,
                 plugins: tuple = ()):
        from ascl_ray.resources import actor_env_defaults

        actor_env_defaults({"VLLM_CPU_KVCACHE_SPACE": str(rcfg.kv_cache_gib)})
        from ascl_ray.resources import pin_to_cores, thread_count

        pin_to_cores(rcfg.cpu_affinity, vllm=True)   # before the engine core process starts: it inherits it
        if rcfg.in_process:     # the engine computes in this process's torch threads (Ray sets OMP_NUM_THREADS=1)
            import torch

            torch.set_num_threads(thread_count(rcfg.torch_threads))
        from transformers import AutoTokenizer

        from ascl_ray.registry import import_plugins
        from ascl_ray.rollout.engine import make_engine
        from ascl_ray.rollout.method import build_context

        import_plugins(list(plugins))     # algorithm.plugins: tools, retrievers, methods registered there

        self.rcfg = rcfg
        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.ctx = build_context(method_cfg, tokenizer=self.tok)
        self.engine = make_engine(rcfg.engine, model_path, dtype=rcfg.dtype, max_model_len=rcfg.max_model_len,
                                  enforce_eager=rcfg.enforce_eager, seed=seed, kv_cache_gib=rcfg.kv_cache_gib,
                                  gpu_memory_utilization=rcfg.gpu_memory_utilization, block_size=rcfg.block_size,
                                  tensor_parallel_size=rcfg.tensor_parallel_size, in_process=rcfg.in_process)

    def ready(self) -> bool:
        return True

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def peak_rss_mb(self) -> float:
        from ascl_ray.resources import peak_rss_mb

        return peak_rss_mb()  # includes vLLM's engine-core child process

    def generate(self, rows: list[PromptRow], group_ids: list[int], seed: int, train: bool = True) -> list[Rollout]:
        from ascl_ray.rollout.episode import SamplingCfg, run_episodes

        G = self.rcfg.n_samples
        all_rows = [r for r in rows for _ in range(G)]
        all_gids = [g for g in group_ids for _ in range(G)]
        scfg = SamplingCfg(max_new_tokens=self.rcfg.max_new_tokens, max_model_len=self.rcfg.max_model_len,
                           min_new_tokens=self.rcfg.min_new_tokens,
                           temperature=self.rcfg.temperature,
                           top_p=self.rcfg.top_p,
                           seed=seed if self.rcfg.seed_per_request else None,
                           continuous=self.rcfg.continuous_batching,
                           budget_includes_tool=self.rcfg.budget_includes_tool, env_seed=seed)
        return run_episodes(self.engine, self.ctx, self.tok, all_rows, all_gids, scfg)

    def load_weights(self, payload: bytes) -> str:
        return self.engine.load_weights(payload)

    def load_weights_from_path(self, path: str) -> str:
        return self.engine.load_weights_from_path(path)

    def weight_group_init(self, addr: str, port: int, rank: int, world_size: int, backend: str,
                          timeout_s: float) -> bool:
        return self.engine.weight_group_init(addr, port, rank, world_size, backend, timeout_s)

    def receive_weights(self, version: int) -> str:
        return self.engine.receive_weights(version)

    def prompt_logprobs(self, seqs: list[list[int]]) -> list[list[float]]:
        return self.engine.prompt_logprobs(seqs)


class RolloutGroup:
    """Workers hold whole prompt groups. A worker that dies or whose engine dies is replaced once
    per call: a fresh actor loads the latest synced weights and redoes its shard.

    Engine ``k`` runs in bundle ``k`` of the group's placement group (``ascl_ray/placement.py``): with tensor
    parallelism its bundle holds all its GPUs, so vLLM's TP ranks share the engine's node; a replacement takes
    the same bundle."""

    def __init__(self, model_path: str, rcfg: RolloutCfg, method_cfg: MethodCfg, seed: int, plugins: tuple = (),
                 placement_timeout_s: float = 120.0):
        from ascl_ray import placement

        self.args = (model_path, rcfg, method_cfg, seed, tuple(plugins))
        self.opts = dict(num_cpus=rcfg.num_cpus_per_worker, num_gpus=rcfg.num_gpus_per_worker,
                         resources=dict(rcfg.resources or {}))
        self.pg = placement.place(placement.rollout_plan(rcfg), placement_timeout_s)
        self.seed = seed
        self.last_payload: Any = None      # ObjectRef of the latest synced weights (for replacements)
        self.last_path: Optional[str] = None
        # set by a sync channel without a replayable payload (collective): loads the current weights
        # into a fresh replacement worker (``restarts`` tells the channel to re-join the workers)
        self.on_replace: Optional[Any] = None
        self.restarts = 0
        self.workers: list[Any] = []
        try:
            self.workers = [self._spawn(i) for i in range(rcfg.num_workers)]
            ray.get([w.ready.remote() for w in self.workers])
        except BaseException:
            self.close(timeout_s=5.0)     # no engine or reserved bundle may outlive a failed start
            raise

    def _spawn(self, i: int) -> Any:
        from ascl_ray.placement import in_bundle

        model_path, rcfg, method_cfg, _, plugins = self.args
        return RolloutWorker.options(**self.opts, scheduling_strategy=in_bundle(self.pg, i)).remote(
            model_path, rcfg, method_cfg, self.seed + i + 1000 * self.restarts, plugins)

    def _replace(self, k: int, err: Exception) -> None:
        log.error("rollout worker %d failed (%s: %s); replacing it", k, type(err).__name__, str(err)[:300])
        try:
            ray.kill(self.workers[k])
        except Exception:  # noqa: BLE001 - already dead
            pass
        self.restarts += 1
        w = self._spawn(k)
        ray.get(w.ready.remote())
        if self.on_replace is not None:
            self.on_replace(w)
        elif self.last_payload is not None:
            ray.get(w.load_weights.remote(self.last_payload))
        elif self.last_path is not None:
            ray.get(w.load_weights_from_path.remote(self.last_path))
        self.workers[k] = w

    def generate(self, rows: list[PromptRow], group_ids: list[int], seed: int) -> list[Rollout]:
        return self.collect(self.generate_async(rows, group_ids, seed))

    def generate_async(self, rows: list[PromptRow], group_ids: list[int], seed: int) -> dict:
        """Start a generation and return at once (a handle for ``collect``): the engines work while the
        driver trains. Ray runs a worker's calls in the order they were sent, so a weight load sent after
        this waits for the generation to end (the driver collects first anyway: a sync never runs under a
        generation)."""
        W = len(self.workers)
        shards = {k: list(range(k, len(rows), W)) for k in range(W)}
        shards = {k: v for k, v in shards.items() if v}
        handle = {"rows": rows, "group_ids": group_ids, "seed": seed, "shards": shards, "refs": {}}
        for k in shards:
            handle["refs"][k] = self._submit(handle, k)
        return handle

    def _submit(self, handle: dict, k: int) -> Any:
        sub = handle["shards"][k]
        return self.workers[k].generate.remote([handle["rows"][i] for i in sub], [handle["group_ids"][i] for i in sub],
                                               handle["seed"] * 7919 + k)

    def collect(self, handle: dict) -> list[Rollout]:
        """The rollouts of a ``generate_async`` (shard order). A worker that died meanwhile is replaced and its
        shard generated again (a second failure propagates: the run stops with the cause)."""
        out: dict[int, list[Rollout]] = {}
        for k in handle["shards"]:
            try:
                out[k] = ray.get(handle["refs"][k])
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                self._replace(k, e)
                out[k] = ray.get(self._submit(handle, k))
        return [r for k in sorted(out) for r in out[k]]

    def load_weights(self, payload_ref: Any) -> list[str]:
        self.last_payload, self.last_path = payload_ref, None
        return ray.get([w.load_weights.remote(payload_ref) for w in self.workers])

    def load_weights_from_path(self, path: str) -> list[str]:
        self.last_payload, self.last_path = None, path
        return ray.get([w.load_weights_from_path.remote(path) for w in self.workers])

    def weight_group_init_async(self, addr: str, port: int, world_size: int, backend: str, timeout_s: float) -> list:
        """Worker k joins the sync group as rank k + 1 (rank 0: learner rank 0)."""
        return [w.weight_group_init.remote(addr, port, k + 1, world_size, backend, timeout_s)
                for k, w in enumerate(self.workers)]

    def receive_weights_async(self, version: int) -> list:
        self.last_payload = self.last_path = None
        return [w.receive_weights.remote(version) for w in self.workers]

    def prompt_logprobs(self, seqs: list[list[int]]) -> list[list[list[float]]]:
        return ray.get([w.prompt_logprobs.remote(seqs) for w in self.workers])

    def peak_rss_mb(self) -> list[float]:
        return ray.get([w.peak_rss_mb.remote() for w in self.workers])

    def pids(self) -> list[int]:
        """OS process id of every worker (for kill tests)."""
        return ray.get([w.pid.remote() for w in self.workers])

    def node_ids(self) -> list[str]:
        """The Ray node of every engine (placement tests)."""
        return ray.get([w.node_id.remote() for w in self.workers])

    def kill_worker(self, k: int) -> None:
        """Fault injection for tests: kill worker ``k`` (the next generate replaces it)."""
        ray.kill(self.workers[k])

    def close(self, timeout_s: float = 60.0) -> None:
        """Graceful actor exit first (lets vLLM shut its engine-core process down), then kill."""
        refs = []
        for w in self.workers:
            try:
                refs.append(w.__ray_terminate__.remote())
            except Exception:  # noqa: BLE001 - already gone
                pass
        if refs:
            try:
                ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
            except Exception:  # noqa: BLE001
                pass
        for w in self.workers:
            try:
                ray.kill(w)
            except Exception:  # noqa: BLE001 - already dead
                pass
        from ascl_ray.placement import remove

        remove(getattr(self, "pg", None))
        self.pg = None
