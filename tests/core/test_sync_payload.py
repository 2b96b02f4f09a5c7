"""The weight payload (ascl_ray.sync.payload): a tied weight travels once and is restored under both names."""

from __future__ import annotations

import pytest
import torch

from ascl_ray.sync.payload import from_safetensors, safetensors_metadata, split_aliases, to_safetensors, with_aliases


def _state():
    torch.manual_seed(0)
    s = {"model.embed_tokens.weight": torch.randn(400, 8), "model.norm.weight": torch.randn(8),
         "empty": torch.zeros(0, 3), "empty2": torch.zeros(0, 3)}
    s["lm_head.weight"] = s["model.embed_tokens.weight"]
    return s


def test_tied_weight_travels_once_and_comes_back_under_both_names():
    state = _state()
    unique, aliases = split_aliases(state)
    assert aliases == {"lm_head.weight": "model.embed_tokens.weight"}
    assert list(unique) == ["model.embed_tokens.weight", "model.norm.weight", "empty", "empty2"]  # empties not aliased
    blob = to_safetensors(unique, aliases)
    naive = to_safetensors({k: v.clone() for k, v in state.items()}, {})
    assert len(naive) - len(blob) >= 0.95 * 400 * 8 * 4     # the vocabulary matrix is not sent a second time
    items = dict(from_safetensors(blob))
    assert set(items) == set(state)
    for k, t in state.items():
        assert torch.equal(items[k], t), k
    assert json_aliases(blob) == aliases


def json_aliases(blob):
    import json

    return json.loads(safetensors_metadata(blob)["ascl_aliases"])


def test_untied_copies_and_views_are_not_aliases():
    a = torch.randn(6, 4)
    state = {"a": a, "copy": a.clone(), "view_rows": a[:3], "t": a.t()}
    unique, aliases = split_aliases(state)
    assert aliases == {} and list(unique) == list(state)
    assert "ascl_aliases" not in safetensors_metadata(to_safetensors({"a": a}, {}))


def test_an_alias_without_its_source_is_an_error():
    with pytest.raises(ValueError, match=r"aliases \['lm_head.weight'\] name tensors that are not in the payload"):
        with_aliases([("x", torch.zeros(2))], {"lm_head.weight": "model.embed_tokens.weight"})
