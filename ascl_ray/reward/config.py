"""The reward pool's typed config (no Ray import: ``ascl_ray.config`` uses it as the ``reward``
group schema, so Hydra overrides are type-checked and validated at start-up). Keys are documented
in ``ascl_ray/reward/pool.py``. ``from_dict`` imports the ``imports`` modules, then checks the judge names
against the judge registry and the ``judge_by_type`` keys against the prompt kinds (the reward-rule registry)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional


@dataclass
class RewardPoolConfig:
    num_workers: int = 2
    num_cpus_per_worker: float = 1.0
    resources: dict = field(default_factory=dict)   # custom Ray resources per actor (node pinning)
    judge: str = "refusal"
    judge_options: dict = field(default_factory=dict)
    judge_by_type: dict = field(default_factory=dict)
    imports: list = field(default_factory=list)
    judge_batch_size: int = 64
    judge_timeout_s: float = 120.0
    item_timeout_s: float = 30.0
    math_timeout_s: float = 5.0
    shard_timeout_s: Optional[float] = None
    max_restarts: int = 3
    rescore_on_actor_death: bool = True
    consult_cost: float = 0.0
    startup_timeout_s: float = 180.0
    math_workers_per_actor: int = 1

    @classmethod
    def from_dict(cls, d: Any) -> "RewardPoolConfig":
        if isinstance(d, cls):
            return d
        if d is None:
            d = {}
        if not isinstance(d, dict):
            d = dict(d)  # e.g. an OmegaConf DictConfig converted by the caller
        d = dict(d)
        if isinstance(d.get("judge"), dict):  # {"judge": {"name": .., "options": ..}}
            j = d.pop("judge")
            d["judge"] = j.get("name", "refusal")
            d["judge_options"] = {**j.get("options", {}), **d.get("judge_options", {})}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"RewardPoolConfig: unknown keys {unknown}; known: {sorted(known)}")
        cfg = cls(**d)
        if cfg.num_workers < 1:
            raise ValueError(f"RewardPoolConfig: num_workers={cfg.num_workers} must be >= 1")
        for k in ("judge_timeout_s", "item_timeout_s", "math_timeout_s"):
            if getattr(cfg, k) <= 0:
                raise ValueError(f"RewardPoolConfig: {k} must be > 0")
        for t, spec in cfg.judge_by_type.items():
            if not isinstance(spec, dict) or "name" not in spec:
                raise ValueError(f"RewardPoolConfig: judge_by_type[{t!r}] must be {{'name': ..., 'options': {{}}}}")
        cfg._check_names()
        return cfg

    def _check_names(self) -> None:
        """Judge names and prompt kinds come from the registries (``ascl_ray.registry``): import ``imports``
        first (they may register judges or reward rules), then check ``judge`` and ``judge_by_type``."""
        from ascl_ray.batch import prompt_types
        from ascl_ray.registry import get_registry, import_plugins

        try:
            import_plugins(self.imports)
        except (ImportError, ValueError) as e:
            raise ValueError(f"RewardPoolConfig: imports: {e}") from None
        judges = get_registry("judge")
        judges.check(self.judge, "RewardPoolConfig: judge")
        kinds = prompt_types()
        for t, spec in self.judge_by_type.items():
            if t not in kinds:
                raise ValueError(f"RewardPoolConfig: judge_by_type[{t!r}]: unknown prompt type; registered prompt "
                                 f"types (reward rules): {list(kinds)}")
            judges.check(spec["name"], f"RewardPoolConfig: judge_by_type[{t!r}].name")

    def to_dict(self) -> dict:
        return asdict(self)
