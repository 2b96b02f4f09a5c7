"""The trainable policy on one learner rank: a HF causal LM inside a DeepSpeed ZeRO-3 engine.

Every method that touches parameters is a collective: all ranks of the learner group call it
together (the Ray actor group does this). No Ray here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from ascl_ray import algo
from ascl_ray.batch import TrainBatch
from ascl_ray.config import AlgorithmCfg, LearnerCfg


def ds_config(lcfg: "LearnerCfg", world_size: int, grad_accum: int, train: bool = True) -> dict:
    """The DeepSpeed config of one learner group (typed ``learner`` config in, DeepSpeed's dict out): ZeRO stage
    ``learner.zero_stage`` (3 by default)."""
    zero: dict[str, Any] = {"stage": int(lcfg.zero_stage), "overlap_comm": False, "contiguous_gradients": True}
    if lcfg.zero_stage == 3:
        zero["stage3_param_persistence_threshold"] = lcfg.param_persistence_threshold
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": world_size * grad_accum,
        "zero_optimization": zero,
        "bf16": {"enabled": lcfg.dtype == "bfloat16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if train:
        cfg["gradient_clipping"] = lcfg.grad_clip
        cfg["optimizer"] = {"type": "AdamW", "params": {
            "lr": lcfg.lr, "betas": [0.9, 0.999], "eps": 1e-8,
            "weight_decay": lcfg.weight_decay, "torch_adam": True}}
        if lcfg.offload_optimizer:
            cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
    return cfg


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0) -> torch.Tensor:
    """[B, T-1] log p(input_ids[:, t+1] | input_ids[:, :t+1]) in float32: the picked logit minus the
    log-sum-exp of its row, so the [B, T, vocab] log-softmax is never materialised (one vocabulary-sized
    tensor less to write and keep for backward; the same value as ``log_softmax(...).gather(...)``).

    ``start``: only columns t >= start are computed (columns before it are 0): the LM head and the
    log-sum-exp run on the last T - start positions only (HF ``logits_to_keep``; the transformer still
    attends over the whole sequence), so a prompt's positions, which no loss reads, cost no vocabulary-
    sized work (TRL does the same). Callers pass the first column any mask selects (``first_target``)."""
    T = input_ids.shape[1]
    start = max(0, min(int(start), T - 2))     # the last column is T - 2
    kw = {"logits_to_keep": T - start} if start > 0 else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **kw).logits[:, :-1].float()
    picked = torch.gather(logits, 2, input_ids[:, start + 1:, None])[..., 0]
    lp = picked - torch.logsumexp(logits, dim=-1)
    if start == 0:
        return lp
    return torch.cat([lp.new_zeros(lp.shape[0], start), lp], dim=1)


def first_target(mask: torch.Tensor) -> int:
    """The first column of a [B, T-1] mask that any row selects (0 when none does): ``token_logprobs``'s
    ``start``, below which no masked quantity needs a log-prob."""
    cols = mask.detach().ne(0).any(dim=0).nonzero()
    return int(cols[0]) if len(cols) else 0


def trim(ix: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """Length of the longest row of micro-batch ``ix`` (rows are right-padded): columns past it are padding
    in every row, so a micro-batch's forward stops there (fewer positions, the same values: no loss-mask
    token lies beyond it)."""
    return int(attention_mask[ix].sum(dim=1).max())


def masked_nll_sum(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SFT: (sum of -log p over targets with ``target_mask`` 1, number of such targets).
    ``target_mask`` is [B, T-1], aligned like ``token_logprobs`` (position t predicts token t+1)."""
    lp = token_logprobs(model, input_ids, attention_mask, start=first_target(target_mask))
    m = target_mask.to(lp.dtype)
    return -(lp * m).sum(), m.sum()


def skip_shm_comm_op() -> None:
    """Keep DeepSpeed from JIT-building its shared-memory all-reduce op when the comm backend starts.

    DeepSpeed's torch backend builds ``deepspeed_shm_comm`` (a C++ extension, through torch's
    ``cpp_extension.load``) in ``TorchBackend.__init__`` on CPU. Only ``inference_all_reduce`` (tensor-
    parallel inference) uses it, never ZeRO-3 training. The build, even a no-op rebuild, takes torch's
    ``FileBaton`` lock file in the torch-extensions folder (``~/.cache/torch_extensions``, shared by every
    checkout on the machine); a process killed while it holds the lock (an OOM kill, ``kill -9``) leaves the
    file behind, and every later learner then waits on it forever (seen: a whole test run hung at the first
    learner). The learners never call the op, so they skip the build."""
    import importlib

    # by module path: the attribute ``deepspeed.comm.torch`` is PyTorch itself (``from .comm import *``)
    backend = importlib.import_module("deepspeed.comm.torch")
    backend.build_shm_op = lambda: None


class Policy:
    def __init__(self, model_path: str, lcfg: "LearnerCfg", acfg: "AlgorithmCfg", rank: int, world_size: int, grad_accum: int):
        import deepspeed
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.integrations import HfDeepSpeedConfig

        self.rank, self.world_size, self.lcfg, self.acfg = rank, world_size, lcfg, acfg
        self.model_path = model_path
        skip_shm_comm_op()
        deepspeed.init_distributed(dist_backend=lcfg.backend)
        dtype = torch.bfloat16 if lcfg.dtype == "bfloat16" else torch.float32
        self.ds_cfg = ds_config(lcfg, world_size, grad_accum)
        # while this object lives, every from_pretrained is a ZeRO-3 collective (all ranks load)
        self._hf_ds = HfDeepSpeedConfig(self.ds_cfg)
        self.hf_config = AutoConfig.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        if lcfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=self.ds_cfg)
        self.ref = None
        if acfg.kl_coef > 0:
            ref_cfg = ds_config(lcfg, world_size, grad_accum, train=False)
            ref_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
            self.ref, _, _, _ = deepspeed.initialize(model=ref_model, config=ref_cfg)
            self.ref.eval()
        self.loss_fn = algo.get_policy_loss(acfg.policy_loss)
        self._grad_norm = 0.0      # of the last optimizer step (see ``_step``)

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, ref: bool = False,
                 start: int = 0) -> torch.Tensor:
        """[B, T-1] token log-probs (columns before ``start`` are 0, see ``token_logprobs``)."""
        eng = self.ref if ref else self.engine
        eng.eval()
        return token_logprobs(eng, input_ids, attention_mask, start=start)

    # ------------------------------------------------------------------ update
    def prepare(self, batch: TrainBatch, fused: bool = False) -> dict[str, Any]:
        """Once per iteration, before any update: the old (behaviour) log-probs, reference log-probs,
        truncated-IS weights and the rollout/train mismatch metrics.

        ``fused``: the iteration takes exactly one optimizer step, so the weights the loss differentiates ARE
        the old policy: the separate no-grad forward is skipped and ``update`` takes the old log-probs, the IS
        weights and the mismatch metrics from the detached log-probs of its own forward (TRL does the same
        when it takes one step per generation). Same values up to float noise of the batch shape, one forward
        pass less per iteration."""
        a = self.acfg
        prep: dict[str, Any] = {"fused": fused, "metrics": {}, "is_w": None, "old_lp": None}
        start = first_target(batch.loss_mask)     # no loss, KL or mismatch term reads a column before it
        prep["ref_lp"] = (self.logprobs(batch.input_ids, batch.attention_mask, ref=True, start=start)
                          if self.ref is not None else None)
        if fused:
            return prep
        learner_lp = self.logprobs(batch.input_ids, batch.attention_mask, start=start)
        mask = batch.loss_mask
        prep["metrics"] = {k: float(v) for k, v in algo.mismatch_metrics(learner_lp, batch.rollout_logprobs, mask).items()}
        prep["is_w"] = (algo.tis_weights(learner_lp, batch.rollout_logprobs, mask, cap=a.tis_cap)
                        if a.tis_cap > 0 else None)
        prep["old_lp"] = batch.rollout_logprobs if a.old_logprobs == "rollout" else learner_lp
        return prep

    def update(self, batch: TrainBatch, prep: dict[str, Any], micro_batches: list[list[int]]) -> dict[str, float]:
        """One optimizer step over ``micro_batches`` (index lists into the batch; their count equals the
        gradient-accumulation steps of the DeepSpeed config). Returns averaged metrics."""
        a = self.acfg
        old_lp, is_w, ref_lp, mask = prep["old_lp"], prep["is_w"], prep["ref_lp"], batch.loss_mask
        fused = prep.get("fused", False)
        seen = torch.zeros_like(batch.rollout_logprobs) if fused else None   # detached log-probs (fused metrics)
        self.engine.train()
        acc: dict[str, list[float]] = {}
        for idx in micro_batches:
            ix = torch.tensor(idx, dtype=torch.long)
            L = trim(ix, batch.attention_mask)          # this micro-batch's longest row; T-1 log-prob columns
            m = mask[ix, : L - 1]
            lp = token_logprobs(self.engine, batch.input_ids[ix, :L], batch.attention_mask[ix, :L], start=first_target(m))
            r_lp = batch.rollout_logprobs[ix, : L - 1]
            adv = batch.advantages[ix][:, None].expand_as(lp)
            if fused:     # one step per iteration: the current weights are the old policy (see ``prepare``)
                cur = lp.detach()
                seen[ix, : L - 1] = cur
                old = r_lp if a.old_logprobs == "rollout" else cur
                w = algo.tis_weights(cur, r_lp, m, cap=a.tis_cap) if a.tis_cap > 0 else None
            else:
                old, w = old_lp[ix, : L - 1], None if is_w is None else is_w[ix, : L - 1]
            loss, lm = self.loss_fn(lp, old, adv, m, agg=a.loss_agg, is_weights=w, **a.loss_opts)
            if ref_lp is not None:
                kl = algo.kl_estimate(lp, ref_lp[ix, : L - 1], a.kl_kind)
                kl_term = algo.agg_loss(kl, m, a.loss_agg)
                loss = loss + a.kl_coef * kl_term
                lm["kl"] = float(kl_term.detach())
            self.engine.backward(loss)
            self._step()
            lm["loss"] = float(loss.detach())
            lm["entropy_proxy"] = float(-(lp.detach() * m).sum() / m.sum().clamp(min=1))
            for k, v in lm.items():
                acc.setdefault(f"train/{k}", []).append(float(v))
        metrics = {k: sum(v) / len(v) for k, v in acc.items()}
        if fused:   # over the whole batch, as the separate pass computes them
            rows = sorted({i for idx in micro_batches for i in idx})
            prep["metrics"] = {k: float(v) for k, v in algo.mismatch_metrics(
                seen[rows], batch.rollout_logprobs[rows], mask[rows]).items()}
        lr = self.engine.get_lr()
        metrics["train/lr"] = float(lr[0]) if lr else self.lcfg.lr
        metrics["train/grad_norm"] = self._grad_norm
        return metrics

    def _step(self) -> None:
        """``engine.step()``, keeping the gradient norm of the last optimizer step in ``self._grad_norm``.
        DeepSpeed reports the norm it clips with for ZeRO stages 1-3 and its bf16 optimizer; stage 0 with a
        plain fp32 optimizer keeps none, so there it is read from the gradients (already averaged over the
        ranks at the accumulation boundary) before the step clips and clears them."""
        own = None
        if self.lcfg.zero_stage == 0 and self.engine.is_gradient_accumulation_boundary():
            norms = [torch.linalg.vector_norm(p.grad.float()) for p in self.engine.module.parameters()
                     if p.grad is not None]
            own = float(torch.linalg.vector_norm(torch.stack(norms))) if norms else None
        self.engine.step()
        reported = self.engine.get_global_grad_norm()
        if reported is not None:
            self._grad_norm = float(reported)
        elif own is not None:
            self._grad_norm = own

    # ------------------------------------------------------------------ SFT
    def sft_update(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor,
                   micro_batches: list[list[int]], total_tokens: float) -> dict[str, float]:
        """One optimizer step of masked token-mean cross-entropy (SFT). ``micro_batches`` are index
        lists into this rank's rows, exactly as many as the DeepSpeed gradient-accumulation steps;
        ``total_tokens`` is the number of trained target tokens over ALL ranks and micro-batches of the
        step, so the step's gradient is that of sum(nll) / total_tokens over the global batch
        (DeepSpeed divides each backward by the accumulation steps and averages over ranks; the
        loss is scaled back up by both). Returns this rank's nll sum and token count."""
        gas = int(self.engine.gradient_accumulation_steps())
        if len(micro_batches) != gas:
            raise ValueError(f"sft_update: {len(micro_batches)} micro-batches, DeepSpeed expects {gas}")
        if any(not idx for idx in micro_batches):
            raise ValueError("sft_update: empty micro-batch")
        scale = self.world_size * gas / max(float(total_tokens), 1.0)
        steps_before = self.engine.global_steps
        self.engine.train()
        nll_sum, n_tok = 0.0, 0.0
        for idx in micro_batches:
            ix = torch.tensor(idx, dtype=torch.long)
            s, n = masked_nll_sum(self.engine, input_ids[ix], attention_mask[ix], target_mask[ix])
            self.engine.backward(s * scale)
            self._step()
            nll_sum += float(s.detach())
            n_tok += float(n)
        if self.engine.global_steps != steps_before + 1:
            raise RuntimeError(f"sft_update: expected one optimizer step, DeepSpeed took "
                               f"{self.engine.global_steps - steps_before}")
        lr = self.engine.get_lr()
        return {"nll_sum": nll_sum, "n_tokens": n_tok,
                "grad_norm": self._grad_norm,
                "lr": float(lr[0]) if lr else float(self.lcfg.lr)}

    @torch.no_grad()
    def sft_eval(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 target_mask: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per-row (nll sum, trained-token count) under the current weights; no update. Collective."""
        self.engine.eval()
        lp = token_logprobs(self.engine, input_ids, attention_mask, start=first_target(target_mask))
        m = target_mask.to(lp.dtype)
        return (-(lp * m).sum(dim=1)).tolist(), m.sum(dim=1).tolist()

    # ------------------------------------------------------------------ export / save
    @torch.no_grad()
    def export_state(self, dtype: Optional[torch.dtype] = None) -> Optional[dict[str, torch.Tensor]]:
        """Gather full parameters one by one (low peak memory); rank 0 gets the dict, others None.
        Tied embeddings: ZeRO-3 ``named_parameters`` drops ``lm_head.weight``; add it explicitly,
        or vLLM silently keeps stale logits."""
        import deepspeed

        out: dict[str, torch.Tensor] = {}
        for name, p in self.engine.module.named_parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                if self.rank == 0:
                    out[name] = p.data.detach().to(dtype or p.dtype).cpu().clone().contiguous()
        if self.rank != 0:
            return None
        if "lm_head.weight" not in out and getattr(self.hf_config, "tie_word_embeddings", False):
            emb = [k for k in out if k.endswith("embed_tokens.weight")]
            if emb:
                out["lm_head.weight"] = out[emb[0]]
        return out

    def save_hf(self, out_dir: str) -> Optional[str]:
        """Collective. Rank 0 writes a safetensors HF folder atomically (temp dir + rename)."""
        from safetensors.torch import save_file

        state = self.export_state()
        if self.rank != 0:
            return None
        from ascl_ray.io import atomic_directory

        with atomic_directory(out_dir) as tmp:
            if getattr(self.hf_config, "tie_word_embeddings", False):
                state.pop("lm_head.weight", None)
            # tied tensors share storage; save_file needs distinct tensors
            save_file({k: v.clone() for k, v in state.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            self.hf_config.save_pretrained(tmp)
            for f in Path(self.model_path).iterdir():
                if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "generation_config", "vocab", "merges")):
                    shutil.copy(f, tmp / f.name)
        return str(out_dir)

    # ------------------------------------------------------------------ full-state checkpoint
    def save_checkpoint(self, folder: str, tag: str, client_state: dict) -> None:
        """Collective (every rank calls it with the same ``folder`` and ``tag``): DeepSpeed writes
        ``folder/tag/`` with this rank's ZeRO-3 partitions of the parameters and the optimizer state
        (plus ``client_state``, saved per rank) and ``folder/latest``. ``folder`` must be storage every
        rank can reach (one machine, or a shared file system). The frozen reference model is not saved
        (it is rebuilt from ``model_path``)."""
        self.engine.save_checkpoint(folder, tag=tag, client_state=client_state)

    def load_checkpoint(self, folder: str, tag: str) -> dict:
        """Collective: restore parameters, optimizer state (and step counts) and LR scheduler from
        ``folder/tag`` written by ``save_checkpoint`` with the same world size; returns this rank's
        client state. Nothing loadable there is a FileNotFoundError naming the folder."""
        import os

        if not os.path.isdir(os.path.join(folder, tag)):    # checked before any collective: all ranks raise
            raise FileNotFoundError(f"learner checkpoint: nothing to load in {folder} (no folder {tag!r} there)")
        load_path, client_state = self.engine.load_checkpoint(folder, tag=tag, load_optimizer_states=True,
                                                              load_lr_scheduler_states=True)
        if load_path is None:
            raise FileNotFoundError(f"learner checkpoint: nothing to load in {folder} (tag {tag!r}) "
                                    f"on rank {self.rank}")
        return dict(client_state or {})

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
