"""``token_logprobs(start=...)``: the LM head on the last positions only gives the same log-probs as the full
forward on every column a mask can select, and gradients that reach the weights the same way."""

import pytest
import torch

from ascl_ray.learner.policy import first_target, token_logprobs


@pytest.fixture(scope="module")
def model(tiny_model_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


def _batch(vocab: int):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (3, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[1, 9:] = 0       # a right-padded row
    mask = torch.zeros(3, 11)
    mask[0, 5:] = 1       # prompts of different lengths: the first target column is 4
    mask[1, 4:8] = 1
    mask[2, 6:] = 1
    return ids, attn, mask


def test_first_target():
    m = torch.zeros(2, 6)
    assert first_target(m) == 0                       # no target: everything computed
    m[1, 3] = 1
    m[0, 4] = 1
    assert first_target(m) == 3
    assert first_target(torch.ones(1, 4, dtype=torch.bool)) == 0


def test_start_matches_full_forward(model):
    ids, attn, mask = _batch(model.config.vocab_size)
    full = token_logprobs(model, ids, attn)
    s = first_target(mask)
    assert s == 4
    part = token_logprobs(model, ids, attn, start=s)
    assert part.shape == full.shape
    assert torch.all(part[:, :s] == 0)
    torch.testing.assert_close(part[:, s:], full[:, s:], rtol=0, atol=1e-5)
    assert (full[:, :s] != 0).all()                    # the skipped columns were real log-probs
    # out-of-range starts are clamped: start past the end keeps the last column
    last = token_logprobs(model, ids, attn, start=99)
    torch.testing.assert_close(last[:, -1], full[:, -1], rtol=0, atol=1e-5)


def test_start_same_gradients(model):
    ids, attn, mask = _batch(model.config.vocab_size)
    grads = []
    for start in (0, first_target(mask)):
        model.zero_grad()
        lp = token_logprobs(model, ids, attn, start=start)
        (-(lp * mask).sum() / mask.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-6, msg=n)
