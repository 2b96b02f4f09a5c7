"""The prompt sampler of the RL loop: stratified by prompt type, with explicit group ids and a
state that a checkpoint saves and a resume restores (no prompt skipped or replayed)."""

from __future__ import annotations

import random

from ascl_ray.batch import PromptRow, prompt_types


class PromptSampler:
    """Stratified by prompt type: each batch takes the types in turn (round robin), each type
    from its own epoch-shuffled list, so the batch mix (and the mean reward) does not swing with
    the draw. ``next_batch`` returns rows and fresh explicit group ids."""

    def __init__(self, rows: list[PromptRow], per_iter: int, seed: int):
        if not rows:
            raise ValueError("data: no training prompts")
        self.by_type = {t: [r for r in rows if r.prompt_type == t] for t in prompt_types()}
        self.by_type = {t: v for t, v in self.by_type.items() if v}
        self.per_iter, self.rng = per_iter, random.Random(seed)
        self.order: dict[str, list[int]] = {t: [] for t in self.by_type}
        self.turn = 0
        self.next_gid = 0

    def _draw(self, t: str) -> PromptRow:
        if not self.order[t]:
            self.order[t] = list(range(len(self.by_type[t])))
            self.rng.shuffle(self.order[t])
        return self.by_type[t][self.order[t].pop()]

    def next_batch(self) -> tuple[list[PromptRow], list[int]]:
        types = list(self.by_type)
        out = []
        for _ in range(self.per_iter):
            out.append(self._draw(types[self.turn % len(types)]))
            self.turn += 1
        gids = list(range(self.next_gid, self.next_gid + len(out)))
        self.next_gid += len(out)
        return out, gids

    def state_dict(self) -> dict:
        return {"order": self.order, "turn": self.turn, "next_gid": self.next_gid, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where ``state_dict()`` was taken (same rows: the caller checks the data)."""
        missing = set(self.order) ^ set(state["order"])
        if missing:
            raise ValueError(f"sampler state: prompt types {sorted(missing)} differ from the data's")
        self.order = {t: list(v) for t, v in state["order"].items()}
        self.turn, self.next_gid = int(state["turn"]), int(state["next_gid"])
        rng = state["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]) if isinstance(rng, list) else rng)
