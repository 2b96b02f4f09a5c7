"""Engines that serve a guard model from a local folder for the ``guard_model`` judge (``guard.py``).

    engine = load_engine("/models/Llama-Guard-3-1B", backend="auto", max_new_tokens=32)
    engine.generate(["<|begin_of_text|>...prompt..."])          # raw prompts (they carry their special tokens)
    engine.generate_chat([[{"role": "user", ...}, {"role": "assistant", ...}]])   # model's chat template

``backend``: ``hf`` (transformers ``generate``, greedy, left padding, batches of ``batch_size``; CPU or GPU),
``vllm`` (``vllm.LLM`` on the GPU cluster, greedy; extra ``llm_kwargs`` go to ``LLM``), ``auto`` (vLLM when
CUDA and vLLM are available, else hf). Prompts are tokenised with ``add_special_tokens=False`` because the
guard formats already contain them. Weights load with ``local_files_only=True`` (no hub access).

In the reward pool: ``judge: guard_model`` with ``judge_options: {model_path: DIR, style: llama_guard3_1b}``;
each actor builds its own engine. torch / transformers / vllm are imported lazily.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

__all__ = ["HFGuardEngine", "VLLMGuardEngine", "load_engine"]


class HFGuardEngine:
    def __init__(self, model_path: str, max_new_tokens: int = 32, device: Optional[str] = None,
                 dtype: str = "auto", batch_size: int = 8, num_threads: Optional[int] = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True,
                                                          dtype=torch_dtype).to(self.device).eval()
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.last_inputs: list[str] = []

    def generate(self, prompts: Sequence[str]) -> list[str]:
        import torch

        self.last_inputs = list(prompts)
        out: list[str] = []
        for s in range(0, len(prompts), self.batch_size):
            enc = self.tokenizer(list(prompts[s : s + self.batch_size]), return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out

    def generate_chat(self, conversations: Sequence[list[dict]]) -> list[str]:
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                 for c in conversations]
        return self.generate(texts)


class VLLMGuardEngine:
    def __init__(self, model_path: str, max_new_tokens: int = 32, **llm_kwargs: Any) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from vllm import LLM, SamplingParams

        self.llm = LLM(model=model_path, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.params = SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens))

    def generate(self, prompts: Sequence[str]) -> list[str]:
        reqs = [{"prompt_token_ids": self.tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        outs = self.llm.generate(reqs, self.params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    def generate_chat(self, conversations: Sequence[list[dict]]) -> list[str]:
        return self.generate([self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                              for c in conversations])


def load_engine(model_path: str, backend: str = "auto", max_new_tokens: int = 32, **kwargs: Any) -> Any:
    if not os.path.isdir(model_path):
        raise FileNotFoundError(f"guard model folder not found: {model_path}")
    if backend == "auto":
        import importlib.util

        import torch

        backend = "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"
    if backend == "hf":
        return HFGuardEngine(model_path, max_new_tokens=max_new_tokens, **kwargs)
    if backend == "vllm":
        return VLLMGuardEngine(model_path, max_new_tokens=max_new_tokens, **kwargs)
    raise ValueError(f"guard engine backend={backend!r}, expected auto, hf or vllm")
