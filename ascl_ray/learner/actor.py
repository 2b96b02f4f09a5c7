"""Ray shell around ``policy.Policy``: N learner actors form one DeepSpeed process group.

``LearnerGroup`` calls every method on all ranks at once (each is a collective) and returns
rank 0's answer. Batches are split into equal shards by rank.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

import ray

from ascl_ray.batch import Rollout, collate
from ascl_ray.config import AlgorithmCfg, LearnerCfg
from ascl_ray.failures import actor_errors
from ascl_ray.learner.sft import even_split, pad_sft


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@ray.remote
class LearnerActor:
    def __init__(self, rank: int, world_size: int, master_addr: str, master_port: int, model_path: str,
                 lcfg: LearnerCfg, acfg: AlgorithmCfg, grad_accum: int, pad_id: int):
        from ascl_ray.resources import actor_env_defaults

        actor_env_defaults()
        from ascl_ray.resources import pin_to_cores, thread_count

        pin_to_cores(lcfg.cpu_affinity)
        threads = thread_count(lcfg.torch_threads)
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK="0", OMP_NUM_THREADS=str(threads))
        import torch

        torch.set_num_threads(threads)   # 1 per rank unless a rank has cores to itself
        from ascl_ray.registry import import_plugins

        import_plugins(acfg.plugins)
        from ascl_ray.learner.policy import Policy

        self.rank, self.pad_id, self.grad_accum = rank, pad_id, grad_accum
        self.policy = Policy(model_path, lcfg, acfg, rank, world_size, grad_accum)

    def node_ip(self) -> str:
        return ray.util.get_node_ip_address()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def endpoint(self) -> tuple[str, int]:
        return ray.util.get_node_ip_address(), _free_port()

    def peak_rss_mb(self) -> float:
        from ascl_ray.resources import peak_rss_mb

        return peak_rss_mb()

    def update(self, shard: list[Rollout], num_mini_batches: int, epochs: int, fused: bool = False) -> dict:
        """``fused``: skip the separate old-log-prob forward (only valid for one optimizer step per iteration;
        ``LearnerGroup.update`` decides, see ``learner.skip_old_logprob_forward``)."""
        batch = collate(shard, self.pad_id)
        n = len(shard)
        per_mini = n // num_mini_batches
        ga = min(self.grad_accum, per_mini)       # near-equal micro-batches, exactly grad_accum of them
        if fused and epochs * num_mini_batches != 1:
            raise ValueError(f"fused old log-probs need one optimizer step per iteration, got epochs={epochs} "
                             f"x num_mini_batches={num_mini_batches}")
        prep = self.policy.prepare(batch, fused=fused)
        stats: dict[str, list[float]] = {}
        for _ in range(epochs):
            for mb in range(num_mini_batches):
                micro_batches = [[mb * per_mini + i for i in part] for part in even_split(per_mini, ga)]
                for k, v in self.policy.update(batch, prep, micro_batches).items():
                    stats.setdefault(k, []).append(v)
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out.update(prep["metrics"])
        out["train/old_logprob_forward"] = 0.0 if fused else 1.0   # the separate no-grad pass ran (1) or not
        return out

    @ray.method(num_returns=2)
    def export_weights(self) -> tuple[Optional[bytes], Optional[str]]:
        """Collective; rank 0 returns (safetensors bytes, sha256) as two objects: each tensor once, a tied
        weight as an alias in the metadata (``ascl_ray.sync.payload``; the engine restores it)."""
        from ascl_ray.sync import payload_digest
        from ascl_ray.sync.payload import split_aliases, to_safetensors

        state = self.policy.export_state()
        if state is None:
            return None, None
        payload = to_safetensors(*split_aliases(state))
        return payload, payload_digest(payload)

    def export_weights_to_path(self, path: str) -> Optional[str]:
        payload, digest = self.export_weights()
        if payload is None:
            return None
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
        return digest

    # ---- collective weight sync (ascl_ray.sync.collective): rank 0 is rank 0 of the sync group
    def sync_group_init(self, addr: str, port: int, world_size: int, backend: str, timeout_s: float) -> bool:
        if self.rank != 0:
            return False
        from ascl_ray.sync.collective import new_group

        self._sync_group = None                      # drop an older group first (re-init after a replacement)
        self._sync_group = new_group(addr, port, 0, world_size, backend, timeout_s)
        self._sync_backend = backend
        return True

    def broadcast_weights(self, version: int) -> Optional[tuple[int, str]]:
        """Collective over the learner ranks (ZeRO-3 gather); rank 0 then broadcasts to the engines
        and returns (bytes, sha256 of what it sent)."""
        from ascl_ray.sync.collective import device_for, send

        state = self.policy.export_state()
        if state is None:
            return None
        if getattr(self, "_sync_group", None) is None:
            raise RuntimeError("broadcast_weights: sync_group_init was not called on learner rank 0")
        store, pg = self._sync_group
        return send(store, pg, version, state, device_for(self._sync_backend))

    def probe_logprobs(self, seqs: list[list[int]]) -> Optional[list[list[float]]]:
        import torch

        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
        lp = self.policy.logprobs(ids, attn)
        if self.rank != 0:
            return None
        return [lp[i, : len(s) - 1].tolist() for i, s in enumerate(seqs)]

    def save_hf(self, out_dir: str) -> Optional[str]:
        return self.policy.save_hf(out_dir)

    def sft_update(self, shard: list[tuple[list[int], list[int]]], total_tokens: float) -> dict:
        """One SFT optimizer step on this rank's rows (sorted by length, split into exactly
        ``grad_accum`` micro-batches). Collective: every rank calls it in the same step."""
        ga = self.grad_accum
        if len(shard) < ga:
            raise ValueError(f"sft_update: {len(shard)} rows on rank {self.rank} cannot fill {ga} micro-batches")
        order = sorted(range(len(shard)), key=lambda i: len(shard[i][0]))
        ids, attn, tmask = pad_sft([shard[i] for i in order], self.pad_id)
        return self.policy.sft_update(ids, attn, tmask, even_split(len(shard), ga), total_tokens)

    def sft_eval(self, rows: list[tuple[list[int], list[int]]],
                 chunk: int = 16) -> Optional[list[tuple[float, float]]]:
        """Per-row (nll sum, trained tokens) under the current weights. Collective (all ranks run
        the same rows); rank 0 returns the list, the others None."""
        out: list[tuple[float, float]] = []
        for k in range(0, len(rows), chunk):
            ids, attn, tmask = pad_sft(rows[k:k + chunk], self.pad_id)
            nll, n = self.policy.sft_eval(ids, attn, tmask)
            out += list(zip(nll, n))
        return out if self.rank == 0 else None

    def save_checkpoint(self, folder: str, tag: str) -> None:
        """Collective: DeepSpeed checkpoint of this rank (weights + optimizer partitions) with this
        rank's torch RNG state and rank as client state."""
        import torch

        self.policy.save_checkpoint(folder, tag, {"torch_rng": torch.get_rng_state(), "rank": self.rank})

    def load_checkpoint(self, folder: str, tag: str) -> None:
        """Collective: restore weights, optimizer state and this rank's torch RNG state."""
        import torch

        client = self.policy.load_checkpoint(folder, tag)
        if "torch_rng" not in client or client.get("rank") != self.rank:
            raise RuntimeError(f"learner checkpoint {folder}/{tag}: rank {self.rank} found client state "
                               f"{sorted(client)} of rank {client.get('rank')}, expected its own torch_rng and rank")
        torch.set_rng_state(client["torch_rng"])

    def pid(self) -> int:
        return os.getpid()

    def shutdown(self) -> None:
        self.policy.shutdown()


class LearnerGroup:
    """The learner ranks of one run (typed ``learner`` and ``algorithm`` config, passed as is to every rank)."""

    def __init__(self, model_path: str, lcfg: LearnerCfg, acfg: AlgorithmCfg, grad_accum: int, pad_id: int,
                 placement_timeout_s: float = 120.0):
        from ascl_ray import placement

        self.world_size = int(lcfg.num_actors)
        self.lcfg = lcfg
        # one bundle per rank (PACK); the rendezvous is rank 0's node IP and a port free THERE (ascl_ray/placement.py)
        self.pg = placement.place(placement.learner_plan(lcfg), placement_timeout_s)
        try:
            addr, port, self.rank0_node = placement.endpoint_in_bundle(self.pg, 0)
        except BaseException:
            placement.remove(self.pg)
            raise
        self.actors = [
            LearnerActor.options(num_cpus=lcfg.num_cpus_per_actor, num_gpus=lcfg.num_gpus_per_actor,
                                 resources=dict(lcfg.resources or {}),
                                 scheduling_strategy=placement.in_bundle(self.pg, r)).remote(
                r, self.world_size, addr, port, model_path, lcfg, acfg, grad_accum, pad_id)
            for r in range(self.world_size)
        ]
        try:
            ray.get([a.node_ip.remote() for a in self.actors])  # surface init errors now
        except Exception:
            # nothing may outlive a failed start: the other ranks would wait in the rendezvous and the
            # placement group would hold its CPUs/GPUs for good
            for a in self.actors:
                ray.kill(a)
            placement.remove(self.pg)
            raise

    def _get_all(self, refs: list) -> list[Any]:
        """``ray.get(refs)``, except that a rank whose actor died (a Ray actor error) does not leave the
        call waiting on the other ranks, which would sit in a gloo collective until its 30-minute
        timeout: every learner actor is killed at once and that error is raised (the group is then
        unusable; the caller rebuilds it). Other errors are raised as ``ray.get`` does: after all
        refs finished, the first in order."""
        refs = list(refs)
        index = {ref: i for i, ref in enumerate(refs)}
        values: list[Any] = [None] * len(refs)
        errors: dict[int, Exception] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    values[index[ref]] = ray.get(ref)
                except actor_errors():     # a dead rank (killed, or by Ray's memory monitor: OutOfMemoryError)
                    for a in self.actors:
                        try:
                            ray.kill(a)
                        except Exception:  # noqa: BLE001 - already gone
                            pass
                    raise
                except Exception as e:  # noqa: BLE001 - raised below, in order, once every rank finished
                    errors[index[ref]] = e
        if errors:
            raise errors[min(errors)]
        return values

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self._get_all([getattr(a, method).remote(*args) for a in self.actors])

    @property
    def fused_old_logprobs(self) -> bool:
        """Skip the separate old-log-prob forward: ``learner.skip_old_logprob_forward`` and one optimizer step
        per iteration (``learner.epochs`` x ``learner.num_mini_batches`` == 1), where it changes no value."""
        return bool(self.lcfg.skip_old_logprob_forward) and self.lcfg.epochs * self.lcfg.num_mini_batches == 1

    def update(self, rollouts: list[Rollout], fused: Optional[bool] = None) -> dict:
        """One iteration's update over all ranks; ``fused`` overrides ``fused_old_logprobs`` (tests)."""
        W = self.world_size
        if len(rollouts) % W:
            raise ValueError(f"learner: batch of {len(rollouts)} rollouts does not split over {W} ranks")
        n = len(rollouts) // W
        shards = [rollouts[r * n:(r + 1) * n] for r in range(W)]
        fused = self.fused_old_logprobs if fused is None else fused
        res = self._get_all([a.update.remote(s, self.lcfg.num_mini_batches, self.lcfg.epochs, fused)
                             for a, s in zip(self.actors, shards)])
        keys = res[0].keys()
        return {k: sum(r[k] for r in res) / W for k in keys}

    def export_weights_ref(self) -> tuple[Any, str]:
        """Returns (ObjectRef of the safetensors bytes in the object store, sha256)."""
        refs = [a.export_weights.remote() for a in self.actors]
        self._get_all([d for _, d in refs])     # a dead rank fails the sync at once (never a hang)
        payload_ref, digest_ref = refs[0]
        return payload_ref, ray.get(digest_ref)

    def export_weights_to_path(self, path: str) -> str:
        return self._all("export_weights_to_path", path)[0]

    def sync_group_init_async(self, addr: str, port: int, world_size: int, backend: str, timeout_s: float) -> list:
        return [a.sync_group_init.remote(addr, port, world_size, backend, timeout_s) for a in self.actors]

    def broadcast_weights_async(self, version: int) -> list:
        """ObjectRefs (one per rank; rank 0's holds (bytes, sha256)); pair with the engines' receive."""
        return [a.broadcast_weights.remote(version) for a in self.actors]

    def rank0_endpoint(self) -> tuple[str, int]:
        """(node IP, a free port there) of learner rank 0: the sync group's TCPStore."""
        return ray.get(self.actors[0].endpoint.remote())

    def probe_logprobs(self, seqs: list[list[int]]) -> list[list[float]]:
        return self._all("probe_logprobs", seqs)[0]

    def save_hf(self, out_dir: str) -> str:
        return self._all("save_hf", out_dir)[0]

    def sft_update(self, rows: list[tuple[list[int], list[int]]]) -> dict:
        """One SFT optimizer step over ``rows`` ((token ids, per-token train mask) pairs), split
        round-robin over the ranks. The loss is the masked token mean over all rows of the step.
        Returns ``loss`` (before the step), ``n_tokens``, ``grad_norm``, ``lr``."""
        W = self.world_size
        shards = [rows[r::W] for r in range(W)]
        total = float(sum(sum(m[1:]) for _, m in rows))
        if total <= 0:
            raise ValueError("sft_update: no trained tokens in the batch (every loss_mask is 0)")
        res = self._get_all([a.sft_update.remote(s, total) for a, s in zip(self.actors, shards)])
        nll = sum(r["nll_sum"] for r in res)
        n = sum(r["n_tokens"] for r in res)
        return {"loss": nll / max(n, 1.0), "n_tokens": n, "grad_norm": res[0]["grad_norm"], "lr": res[0]["lr"]}

    def sft_eval(self, rows: list[tuple[list[int], list[int]]]) -> list[tuple[float, float]]:
        """Per-row (nll sum, trained tokens) under the current weights (no update)."""
        return self._all("sft_eval", rows)[0]

    def save_checkpoint(self, folder: str, tag: str = "learner") -> None:
        """All ranks write their DeepSpeed checkpoint into ``folder/tag`` (see ``Policy.save_checkpoint``)."""
        self._all("save_checkpoint", folder, tag)

    def load_checkpoint(self, folder: str, tag: str = "learner") -> None:
        """All ranks restore weights, optimizer state and torch RNG from ``folder/tag`` (same world size)."""
        self._all("load_checkpoint", folder, tag)

    def node_ids(self) -> list[str]:
        """The Ray node of every rank (rank order; placement tests)."""
        return self._all("node_id")

    def pids(self) -> list[int]:
        """OS process id of every rank (rank order)."""
        return self._all("pid")

    def peak_rss_mb(self) -> list[float]:
        return self._all("peak_rss_mb")

    def close(self) -> None:
        try:
            self._all("shutdown")
        finally:
            for a in self.actors:
                ray.kill(a)
            from ascl_ray.placement import remove

            remove(self.pg)
