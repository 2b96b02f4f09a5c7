"""The TRL arm of ``ascl_ray.bench_trl``, run inside its subprocess (``PYTHONPATH`` holds the TRL site, so
``trl`` imports here and nowhere else in the project): ``GRPOTrainer`` on the work ``bench_trl`` composed,
timed per optimizer step into ``<out>/steps.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path

# ascl-ray's token-mean over the whole batch is TRL's "dapo" (normalised by the active tokens of the
# global accumulated batch); per-sequence means are TRL's "grpo"
LOSS_AGG_TO_TRL = {"token-mean": "dapo", "seq-mean-token-mean": "grpo"}


def trl_worker(spec_path: str) -> int:
    """The TRL arm, inside the subprocess (``PYTHONPATH`` holds the TRL site). Writes one json line per
    optimizer step to ``<out>/steps.jsonl``."""
    spec = json.loads(Path(spec_path).read_text())
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ascl_ray.cli import compose
    from ascl_ray.data.sampler import PromptSampler
    from ascl_ray.reward.math import verify_math
    from ascl_ray.rollout.chat import prompt_ids
    from ascl_ray.rollout.method import build_context
    from ascl_ray.runtime import ensure_model, load_prompts

    cfg = compose(spec["overrides"])
    steps, out = int(spec["steps"]), Path(spec["out"])
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    model_path = ensure_model(cfg)
    tok = AutoTokenizer.from_pretrained(model_path)
    system = build_context(cfg.method, tokenizer=tok).system_text
    train_rows, _ = load_prompts(cfg)
    sampler = PromptSampler(train_rows, cfg.data.prompts_per_iter, cfg.trainer.seed)
    order = [r for _ in range(steps) for r in sampler.next_batch()[0]]   # the prompts ascl-ray draws, in order

    def msgs(text: str) -> list[dict]:
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]

    ds = Dataset.from_list([{"prompt": msgs(r.text), "reference": r.reference, "math_kind": r.math_kind}
                            for r in order])
    timeout = float(cfg.reward.math_timeout_s)

    def math_reward(prompts, completions, reference, math_kind, **_):   # noqa: ANN001 - TRL's signature
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [verify_math(t, ref, kind, timeout_s=timeout) for t, ref, kind in zip(texts, reference, math_kind)]

    # TRL stops generating on the tokenizer's eos and generation_config.eos_token_id, as ascl-ray's vLLM engine does
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    n_rows = cfg.data.prompts_per_iter * cfg.rollout.n_samples
    mb = int(spec.get("micro_batch") or min(cfg.learner.micro_batch_size, n_rows))
    if n_rows % mb:
        raise ValueError(f"micro batch {mb} does not divide the {n_rows} rows of a step")
    loss_opts = dict(cfg.algorithm.loss_opts)
    if cfg.algorithm.loss_agg not in LOSS_AGG_TO_TRL:
        raise ValueError(f"algorithm.loss_agg={cfg.algorithm.loss_agg!r} has no TRL loss_type here")
    args = GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=mb, gradient_accumulation_steps=n_rows // mb,
        num_generations=cfg.rollout.n_samples, max_completion_length=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=0,
        beta=0.0, num_iterations=1, epsilon=float(loss_opts.get("clip_low", 0.2)),
        epsilon_high=float(loss_opts.get("clip_high", loss_opts.get("clip_low", 0.2))),
        loss_type=LOSS_AGG_TO_TRL[cfg.algorithm.loss_agg],
        scale_rewards="group" if dict(cfg.algorithm.options).get("norm_std", True) else "none",
        learning_rate=cfg.learner.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=cfg.learner.weight_decay, max_grad_norm=cfg.learner.grad_clip,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, optim="adamw_torch",
        max_steps=steps, use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=cfg.learner.gradient_checkpointing, use_vllm=False,
        report_to="none", logging_strategy="no", save_strategy="no", disable_tqdm=True,
        shuffle_dataset=False, seed=cfg.trainer.seed, dataloader_num_workers=0,
        # rollout.min_new_tokens: no eos before it (the bench sets it to max_new_tokens: the same work per step)
        generation_kwargs={"min_new_tokens": int(cfg.rollout.min_new_tokens)} if cfg.rollout.min_new_tokens else None)
    acc = {"generation": 0.0, "score": 0.0, "tokens": 0}

    class TimedGRPO(GRPOTrainer):
        def _tokenize_prompts(self, prompts):   # noqa: ANN001
            ids, *rest = super()._tokenize_prompts(prompts)
            for p, got in zip(prompts, ids):     # the very prompt tokens ascl-ray's rollout feeds vLLM
                want = prompt_ids(tok, p[-1]["content"], system)
                if list(got) != want:
                    raise RuntimeError(f"TRL renders {p[-1]['content']!r} as {list(got)}, ascl-ray as {want}")
            return (ids, *rest)

        def _generate_single_turn(self, *a, **k):   # noqa: ANN002, ANN003
            t = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(*a, **k)
            acc["generation"] += time.perf_counter() - t
            acc["tokens"] += sum(len(c) for c in completion_ids)
            return completion_ids, logprobs

        def _generate_and_score_completions(self, inputs):   # noqa: ANN001
            texts = [x["prompt"][-1]["content"] for x in inputs]
            acc["prompts"] = list(dict.fromkeys(texts))   # each prompt n_samples times in a row
            t = time.perf_counter()
            res = super()._generate_and_score_completions(inputs)
            acc["score"] += time.perf_counter() - t
            return res

    f = open(out / "steps.jsonl", "w")

    class StepTimer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):   # noqa: ANN001
            acc.update(generation=0.0, score=0.0, tokens=0)
            self.wall, self.t = time.time(), time.perf_counter()

        def on_step_end(self, a, state, control, **kw):   # noqa: ANN001
            step = time.perf_counter() - self.t
            k = state.global_step - 1
            want = [r.text for r in order[k * cfg.data.prompts_per_iter:(k + 1) * cfg.data.prompts_per_iter]]
            if acc.get("prompts") != want:   # the same prompts as ascl-ray's sampler draws at this step
                raise RuntimeError(f"TRL step {k}: prompts {acc.get('prompts')} are not ascl-ray's {want}")
            rec = {"step": step, "generation": acc["generation"], "train": step - acc["generation"],
                   "score": acc["score"] - acc["generation"], "tokens": float(acc["tokens"]),
                   "begin_wall": self.wall, "global_step": state.global_step}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(f"[TRL step {state.global_step}] step={step:.2f}s generation={acc['generation']:.2f}s "
                  f"tokens={acc['tokens']}", flush=True)

    trainer = TimedGRPO(model=model, reward_funcs=[math_reward], args=args, train_dataset=ds,
                        processing_class=tok, callbacks=[StepTimer()])
    print(f"TRL {__import__('trl').__version__}: {steps} steps, micro batch {mb} x {n_rows // mb} accumulation, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    trainer.train()
    f.close()
    return 0
