"""Input validation and per-group reductions for sequence-level estimators.

Groups are defined ONLY by ``group_ids`` (samples of one prompt share an id). Ids may be any
integers, in any order, interleaved; positions carry no meaning. All reductions here are
vectorised scatter operations over ``inverse`` = the dense group index of each sample.

Shapes: B = number of samples, N = number of distinct groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

__all__ = ["Groups", "check_rewards", "check_group_ids", "check_modes", "make_groups", "validate_inputs"]


def _as_tensor(x: Any, name: str, device: Optional[torch.device] = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(f"`{name}` must be a tensor or a sequence of numbers, got {type(x).__name__}") from exc
    if t.dim() != 1:
        raise ValueError(f"`{name}` must be 1-D [B], got shape {tuple(t.shape)}")
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def check_rewards(rewards: Any) -> torch.Tensor:
    """Return ``rewards`` as a 1-D float64 tensor [B]; reject empty input, non-numeric, NaN/inf."""
    r = _as_tensor(rewards, "rewards")
    if r.numel() == 0:
        raise ValueError("`rewards` is empty (B=0): nothing to estimate")
    if r.dtype == torch.bool or r.is_complex():
        raise TypeError(f"`rewards` must be a real-valued tensor, got dtype {r.dtype}")
    r = r.to(torch.float64)
    bad = ~torch.isfinite(r)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(f"`rewards` contains NaN/inf at index {idx} (showing up to 10)")
    return r


def check_group_ids(group_ids: Any, n: int, device: torch.device) -> torch.Tensor:
    """Return ``group_ids`` as a 1-D int64 tensor [B]; reject non-integer dtypes and length mismatch."""
    g = _as_tensor(group_ids, "group_ids", device)
    if g.dtype == torch.bool or g.is_floating_point() or g.is_complex():
        raise TypeError(f"`group_ids` must be an integer tensor, got dtype {g.dtype}")
    if g.numel() != n:
        raise ValueError(f"`group_ids` has length {g.numel()} but `rewards` has length {n}")
    return g.to(torch.int64)


def check_modes(modes: Any, n: int, device: torch.device) -> torch.Tensor:
    """Return ``modes`` as a 1-D bool tensor [B] (True = consulted); values must be 0/1 (or bool)."""
    m = _as_tensor(modes, "modes", device)
    if m.numel() != n:
        raise ValueError(f"`modes` has length {m.numel()} but `rewards` has length {n}")
    if m.dtype == torch.bool:
        return m
    if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("`modes` must be bool or 0/1 values (1 = consulted the rule tool)")
    return m != 0


@dataclass(frozen=True)
class Groups:
    """Dense group structure of a batch.

    inverse: [B] int64, dense group index in [0, N) of each sample
    counts:  [N] int64, group sizes
    """

    inverse: torch.Tensor
    counts: torch.Tensor

    @property
    def n_groups(self) -> int:
        return int(self.counts.numel())

    def sizes(self) -> torch.Tensor:
        """[B] size of each sample's group."""
        return self.counts[self.inverse]

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """[N] per-group sum of x [B]."""
        out = torch.zeros(self.n_groups, dtype=x.dtype, device=x.device)
        return out.index_add_(0, self.inverse, x)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """[N] per-group mean of x [B]."""
        return self.sum(x) / self.counts.to(x.dtype)

    def amax(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((self.n_groups,), float("-inf"), dtype=x.dtype, device=x.device)
        return out.scatter_reduce_(0, self.inverse, x, reduce="amax", include_self=True)

    def amin(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((self.n_groups,), float("inf"), dtype=x.dtype, device=x.device)
        return out.scatter_reduce_(0, self.inverse, x, reduce="amin", include_self=True)

    def uniform(self, x: torch.Tensor) -> torch.Tensor:
        """[B] bool: True where every sample of the sample's group has the same value of x."""
        return (self.amax(x) == self.amin(x))[self.inverse]

    def both_modes_share(self, modes: torch.Tensor) -> float:
        """Share of groups holding both a consult and a direct sample (K = 2); ``modes`` [B] bool."""
        n_consult = self.sum(modes.to(torch.float64))
        both = (n_consult > 0) & (n_consult < self.counts.to(torch.float64))
        return float(both.to(torch.float64).mean())

    def centered(self, x: torch.Tensor) -> torch.Tensor:
        """[B] x - group mean, exactly 0 in groups whose values are all equal (no rounding residue)."""
        c = x - self.mean(x)[self.inverse]
        return torch.where(self.uniform(x), torch.zeros_like(c), c)

    def std(self, x: torch.Tensor) -> torch.Tensor:
        """[N] per-group SAMPLE (unbiased, n-1) standard deviation, as ``torch.std``; 0 for size-1 groups."""
        c = self.centered(x)
        ss = self.sum(c * c)
        dof = (self.counts - 1).clamp(min=1).to(x.dtype)
        return torch.sqrt(ss / dof)


def make_groups(group_ids: torch.Tensor) -> Groups:
    """Dense group structure from integer ids [B] (any values, any order)."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    return Groups(inverse=inverse, counts=counts)


def validate_inputs(rewards: Any, group_ids: Any, modes: Any = None):
    """Validate and convert: returns (rewards float64 [B], group_ids int64 [B], modes bool [B] or None)."""
    r = check_rewards(rewards)
    g = check_group_ids(group_ids, r.numel(), r.device)
    m = None if modes is None else check_modes(modes, r.numel(), r.device)
    return r, g, m


def out_dtype(rewards: Any) -> torch.dtype:
    """dtype of returned advantages: the rewards' dtype when floating, else float32."""
    if isinstance(rewards, torch.Tensor) and rewards.is_floating_point():
        return rewards.dtype
    return torch.float32
