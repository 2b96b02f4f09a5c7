"""Ray shell around a rollout engine + the multi-turn episode runner.

``RolloutGroup`` shards prompt groups over workers (whole groups stay on one worker) and
broadcasts weight updates to all of them.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from ascl_ray.batch import PromptRow, Rollout


@ray.remote
class RolloutWorker:
    def __init__(self, model_path: str, rcfg: dict, method_cfg: dict, seed: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        from ascl_ray.rollout.engine import make_engine
        from ascl_ray.rollout.method import build_context

        self.rcfg = rcfg
        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.ctx = build_context(method_cfg, tokenizer=self.tok)
        self.engine = make_engine(rcfg["engine"], model_path, dtype=rcfg["dtype"], max_model_len=rcfg["max_model_len"],
                                  enforce_eager=rcfg["enforce_eager"], seed=seed, kv_cache_gib=rcfg["kv_cache_gib"])

    def ready(self) -> bool:
        return True

    def peak_rss_mb(self) -> float:
        from ascl_ray.resources import peak_rss_mb

        return peak_rss_mb()  # includes vLLM's engine-core child process

    def generate(self, rows: list[PromptRow], group_ids: list[int], seed: int, train: bool = True) -> list[Rollout]:
        from ascl_ray.rollout.episode import SamplingCfg, run_episodes

        G = self.rcfg["n_samples"]
        all_rows = [r for r in rows for _ in range(G)]
        all_gids = [g for g in group_ids for _ in range(G)]
        scfg = SamplingCfg(max_new_tokens=self.rcfg["max_new_tokens"], max_model_len=self.rcfg["max_model_len"],
                           temperature=self.rcfg["temperature"],
                           top_p=self.rcfg["top_p"], seed=seed)
        return run_episodes(self.engine, self.ctx, self.tok, all_rows, all_gids, scfg)

    def load_weights(self, payload: bytes) -> str:
        return self.engine.load_weights(payload)

    def load_weights_from_path(self, path: str) -> str:
        return self.engine.load_weights_from_path(path)

    def prompt_logprobs(self, seqs: list[list[int]]) -> list[list[float]]:
        return self.engine.prompt_logprobs(seqs)


class RolloutGroup:
    def __init__(self, model_path: str, rcfg: dict, method_cfg: dict, seed: int):
        opts = dict(num_cpus=rcfg["num_cpus_per_worker"], num_gpus=rcfg["num_gpus_per_worker"])
        self.workers = [RolloutWorker.options(**opts).remote(model_path, rcfg, method_cfg, seed + i)
                        for i in range(rcfg["num_workers"])]
        ray.get([w.ready.remote() for w in self.workers])

    def generate(self, rows: list[PromptRow], group_ids: list[int], seed: int) -> list[Rollout]:
        W = len(self.workers)
        refs = []
        for k, w in enumerate(self.workers):
            sub = list(range(k, len(rows), W))
            if sub:
                refs.append(w.generate.remote([rows[i] for i in sub], [group_ids[i] for i in sub], seed * 7919 + k))
        return [r for part in ray.get(refs) for r in part]

    def load_weights(self, payload_ref: Any) -> list[str]:
        return ray.get([w.load_weights.remote(payload_ref) for w in self.workers])

    def load_weights_from_path(self, path: str) -> list[str]:
        return ray.get([w.load_weights_from_path.remote(path) for w in self.workers])

    def prompt_logprobs(self, seqs: list[list[int]]) -> list[list[list[float]]]:
        return ray.get([w.prompt_logprobs.remote(seqs) for w in self.workers])

    def peak_rss_mb(self) -> list[float]:
        return ray.get([w.peak_rss_mb.remote() for w in self.workers])

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
