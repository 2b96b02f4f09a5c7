"""``ascl-ray`` command line.

    ascl-ray train [hydra overrides...]      e.g. ascl-ray train algorithm=grpo rollout.n_samples=4
    ascl-ray train +experiment=NAME [...]    a recipe from conf/experiment/ (GPU recipes: README "GPU recipes")
    ascl-ray train --dry-run [--cluster-shape 2x8[:CPUS]] [overrides...]
                                             validate, print the batch arithmetic and actor plan, check it fits
                                             the shape (default cluster.shape); starts nothing (exit 3: no fit)
    ascl-ray train -m key=a,b key2=x,y ...   multirun: every combination, one run after another (ascl_ray.sweep)
    ascl-ray compare DIR... [--out DIR]      table + curves of runs or sweep folders (ascl_ray.compare)
    ascl-ray build-tiny --out DIR            build the embedded tiny default model
    ascl-ray show-config [overrides...]      print the composed, validated config
    ascl-ray plugins [PLUGIN_MODULE...]      every plug-in point and its registered names (after importing those)
    ascl-ray eval [overrides...]             benchmark suites -> report.md/json/png (ascl_ray.eval.harness)
    ascl-ray cada-chains [overrides...]      CADA self-generated reasoning chains -> SFT jsonl (ascl_ray.cada)
    ascl-ray sft [overrides...]              SFT on a jsonl of demonstrations (ascl_ray.sft_run)
    ascl-ray judge-check ...                 judge agreement with human labels (ascl_ray.reward.judge_check)

Config groups live in ``conf/`` (model, rollout, learner, reward, algorithm, method, data, cluster);
``conf/experiment/`` holds whole recipes, added with ``+experiment=NAME`` (Hydra's ``@package _global_``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Optional

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "rollout", "learner", "reward", "algorithm", "method", "data", "cluster")


def dict_overrides(overrides: list[str]) -> list[str]:
    """``key={...}`` on a free-form dict (``method.policy``, ``method.tool_options``, ``algorithm.options``)
    merges into it, new keys included: Hydra's struct mode refuses new keys for a plain ``key=``, so such
    an override is passed as ``++key={...}`` (override or add). ``experiment=NAME`` (a recipe of
    ``conf/experiment/``, in no defaults list) is passed as ``+experiment=NAME``. Others are unchanged."""
    return ["++" + o if re.match(r"^[A-Za-z_][\w.]*=\{", o) else "+" + o if o.startswith("experiment=") else o
            for o in overrides]


def compose_node(overrides: list[str], conf_dir: Optional[str] = None, config_name: str = "config"):
    """Compose ``conf/<config_name>.yaml`` with overrides: the raw (unvalidated, non-struct) DictConfig.
    Errors (missing config, bad override) are ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from ascl_ray.config import ConfigError

    conf = str(Path(conf_dir or os.environ.get("ASCL_CONF_DIR") or CONF_DIR).resolve())
    if not os.path.isdir(conf):
        raise ConfigError(f"config dir not found: {conf}")
    if not os.path.isfile(os.path.join(conf, f"{config_name}.yaml")):
        raise ConfigError(f"config not found: {conf}/{config_name}.yaml")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=dict_overrides(overrides))
    except HydraException as e:
        raise ConfigError(f"overrides {list(overrides)}: {e}".replace("\n", " ")) from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    return cfg


def compose(overrides: list[str], conf_dir: Optional[str] = None):
    """Compose ``conf/config.yaml`` with overrides and return the validated TrainConfig."""
    from ascl_ray.config import load_config

    return load_config(compose_node(overrides, conf_dir))


def _help() -> str:
    lines = [__doc__.strip(), "", "Options per group (pick with group=option):"]
    for g in GROUPS + ("experiment",):
        opts = sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
        lines.append(f"  {g:<10} {', '.join(opts)}" + ("   (+experiment=NAME)" if g == "experiment" else ""))
    lines += ["", "Any key is overridable: learner.lr=5e-4 trainer.iterations=30 tracking.wandb_mode=online",
              "Run `ascl-ray show-config [overrides]` to see every key and its value."]
    return "\n".join(lines)


def _pop_flags(rest: list[str]) -> tuple[list[str], bool, Optional[str]]:
    """(overrides, --dry-run given, --cluster-shape value or None) from ``train``'s arguments."""
    out, dry, shape = [], False, None
    it = iter(rest)
    for a in it:
        if a == "--dry-run":
            dry = True
        elif a == "--cluster-shape":
            shape = next(it, None)
            if not shape:
                raise ValueError("--cluster-shape needs a value, e.g. --cluster-shape 2x8 or 2x8:64")
        elif a.startswith("--cluster-shape="):
            shape = a.split("=", 1)[1]
        else:
            out.append(a)
    return out, dry, shape


def dry_run(overrides: list[str], shape: Optional[str] = None) -> int:
    """Compose + validate, print the plan; 0, or 3 when it does not fit the shape (the error on stderr)."""
    from ascl_ray.dry_run import report

    cfg = compose(overrides)
    text, error = report(cfg, shape)   # a malformed shape raises ValueError naming the expected form
    print(text)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    cmd, rest = argv[0], argv[1:]
    from ascl_ray.config import ConfigError

    try:
        if cmd == "train":
            if "--help" in rest or "-h" in rest:
                print(_help())
                return 0
            rest, dry, shape = _pop_flags(rest)
            if dry and ("-m" in rest or "--multirun" in rest):
                raise ValueError("--dry-run checks one config: leave out -m (or dry-run each combination)")
            if dry:
                return dry_run(rest, shape)
            if shape is not None:
                raise ValueError("--cluster-shape goes with --dry-run (a real run is placed on the cluster Ray sees)")
            if "-m" in rest or "--multirun" in rest:
                from ascl_ray.sweep import run_sweep

                return 1 if run_sweep([a for a in rest if a not in ("-m", "--multirun")]) else 0
            cfg = compose(rest)
            from ascl_ray.driver import train

            summary = train(cfg)
            print(f"done in {summary['total_s']:.0f}s; checkpoint: {summary['final_checkpoint']}; "
                  f"curves: {summary['plot']}")
            return 0
        if cmd == "show-config":
            from omegaconf import OmegaConf

            from ascl_ray.config import to_dict

            print(OmegaConf.to_yaml(to_dict(compose(rest))))
            return 0
        if cmd == "plugins":
            from ascl_ray.registry import all_registries, import_plugins

            try:
                import_plugins(rest)
            except ImportError as e:
                raise ConfigError(str(e)) from None
            for point, reg in all_registries().items():
                print(f"{point:20s} {', '.join(reg.names_in_order())}")
            return 0
        if cmd == "build-tiny":
            from ascl_ray.data.tiny_model import main as build_main

            build_main(rest)
            return 0
        sub = {"eval": "ascl_ray.eval.harness", "cada-chains": "ascl_ray.cada", "sft": "ascl_ray.sft_run",
               "compare": "ascl_ray.compare"}
        if cmd in sub:
            import importlib

            return int(importlib.import_module(sub[cmd]).main(rest) or 0)
        if cmd == "judge-check":
            from ascl_ray.reward.judge_check import main as jc_main

            return int(jc_main(rest) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"error: unknown command {cmd!r}\n\n{_help()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
