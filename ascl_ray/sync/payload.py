"""The weight payload both ends agree on: each tensor once, tied names as aliases.

A tied model (SmolLM2, the tiny defaults: ``lm_head.weight`` IS ``embed_tokens.weight``) exports one tensor
under two names. Sending it twice costs a vocabulary x hidden matrix per sync (113 MB of SmolLM2's 651 MB
payload), yet the engine must still be handed ``lm_head.weight``: a reload without it keeps stale logits from
vLLM's packed CPU copy (environment.md). So the learner sends each tensor once plus an alias map
``{alias: source}``, and the engine side re-adds every alias as the same tensor before reloading.

    unique, aliases = split_aliases(state)            # learner rank 0
    blob = to_safetensors(unique, aliases)            # object_store / shm channels (aliases in the metadata)
    items = from_safetensors(blob)                    # engine: [(name, tensor)] with the aliases restored
    items = with_aliases(received_items, aliases)     # collective channel (aliases sent beside the tensors)
"""

from __future__ import annotations

import json
import struct
from typing import Any

ALIAS_KEY = "ascl_aliases"


def split_aliases(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors each once, {alias name: name of the tensor it is}). Two names alias when they are the same
    tensor object or share storage with the same shape, offset and strides (a tied weight)."""
    unique: dict[str, Any] = {}
    seen: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype) \
            if t.numel() else ("empty", name)
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            unique[name] = t
    return unique, aliases


def with_aliases(items: list[tuple[str, Any]], aliases: dict[str, str]) -> list[tuple[str, Any]]:
    """``items`` plus ``(alias, tensor of its source)`` for every alias; an alias whose source is missing is
    an error (a payload that cannot be completed must not reach the engine)."""
    by_name = dict(items)
    missing = sorted(a for a, src in aliases.items() if src not in by_name)
    if missing:
        raise ValueError(f"weight payload: aliases {missing} name tensors that are not in the payload")
    return list(items) + [(a, by_name[src]) for a, src in aliases.items()]


def to_safetensors(unique: dict[str, Any], aliases: dict[str, str]) -> bytes:
    """One safetensors blob of the unique tensors, the alias map in its metadata. No copy of the tensors is
    made beyond the serialisation itself (they are distinct, so safetensors accepts them as they are)."""
    from safetensors.torch import save

    return save(unique, metadata={ALIAS_KEY: json.dumps(aliases)} if aliases else None)


def safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (its JSON header), without reading the tensors."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(bytes(blob[8:8 + n])).get("__metadata__") or {}


def from_safetensors(blob: bytes) -> list[tuple[str, Any]]:
    """[(name, tensor)] of a blob written by ``to_safetensors``, every alias restored."""
    from safetensors.torch import load

    aliases = json.loads(safetensors_metadata(blob).get(ALIAS_KEY, "{}"))
    return with_aliases(list(load(blob).items()), aliases)
