"""``ascl-ray compare DIR... [--out DIR] [--last N] [--group-by K1,K2]``: compare runs (folders with ``metrics.jsonl`` +
``config.json``) or sweep folders (their run sub-folders).

Runs are grouped by the config keys that differ between them, seeds and paths excluded (e.g.
``algorithm.name=ifpo, algorithm.options.freq_scope=batch``); each group's seeds are summarised as mean
and [min, max]. Per run: ``final`` = mean over its last ``--last`` iterations (default 3, smooths the
per-iteration noise of a small batch), ``auc`` = mean over all iterations (the area under the curve per
iteration). Metrics: reward (overall and needs-rules), consultation on needs-rules and no-rules prompts,
the targeting gap (their difference), the malformed-call rate. A run with missing or partial metrics is
named in the output (``incomplete``) and left out of its group's figures, never a crash.

Writes ``compare.md``, ``compare.json`` and ``compare.png`` (consultation curves per prompt kind, one
line per group = mean over seeds, band = min..max) to ``--out`` (default: the first DIR).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Optional

METRICS = (("reward", "reward/mean"), ("reward_needs_rules", "reward/needs_rules"),
           ("consult_needs_rules", "consultation/needs_rules"), ("consult_no_rules", "consultation/no_rules"),
           ("targeting_gap", "consultation/targeting_gap"), ("malformed_call_rate", "rollout/malformed_call_rate"))
CURVES = (("needs_rules", "consultation/needs_rules"), ("no_rules", "consultation/no_rules"),
          ("gray_zone", "consultation/gray_zone"), ("harmful", "consultation/harmful"),
          ("benign_sensitive", "consultation/benign_sensitive"), ("math", "consultation/math"))
# config keys that never define a group (seeds, paths, names, logging)
IGNORED = ("trainer.seed", "trainer.out_dir", "tracking.", "model.path", "cluster.", "data.path")


def find_runs(dirs: list[str]) -> list[Path]:
    """Each DIR is a run (has metrics.jsonl or config.json) or holds runs one level down."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise FileNotFoundError(f"compare: not a folder: {d}")
        if (p / "metrics.jsonl").exists() or (p / "config.json").exists():
            out.append(p)
            continue
        subs = sorted(q for q in p.iterdir() if q.is_dir() and ((q / "metrics.jsonl").exists()
                                                                  or (q / "config.json").exists()
                                                                  or (q / "train.log").exists()))
        if not subs:
            raise FileNotFoundError(f"compare: {d} holds no run (no metrics.jsonl, config.json or train.log)")
        out += subs
    return out


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(d, sort_keys=True) if isinstance(d, list) else d}


def load_run(path: Path) -> dict:
    """{path, config (flat), history, problem}: ``problem`` names what is missing, else None."""
    run: dict[str, Any] = {"path": str(path), "config": {}, "history": [], "problem": None}
    cfg = path / "config.json"
    if cfg.exists():
        try:
            run["config"] = _flat(json.loads(cfg.read_text()))
        except json.JSONDecodeError as e:
            run["problem"] = f"config.json unreadable ({e.msg})"
    else:
        run["problem"] = "no config.json"
    m = path / "metrics.jsonl"
    if not m.exists():
        run["problem"] = run["problem"] or "no metrics.jsonl"
        return run
    for i, line in enumerate(m.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            run["history"].append(json.loads(line))
        except json.JSONDecodeError:
            run["problem"] = run["problem"] or f"metrics.jsonl line {i} is not JSON (run cut off?)"
            break
    if not run["history"]:
        run["problem"] = run["problem"] or "metrics.jsonl is empty"
    return run


def run_figures(history: list[dict], last: int) -> dict[str, Optional[float]]:
    out: dict[str, Optional[float]] = {}
    for name, key in METRICS:
        vals = [h[key] for h in history if isinstance(h.get(key), (int, float))]
        tail = [h[key] for h in history[-last:] if isinstance(h.get(key), (int, float))]
        out[f"final_{name}"] = sum(tail) / len(tail) if tail else None
        out[f"auc_{name}"] = sum(vals) / len(vals) if vals else None
    return out


def group_label(cfg: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={cfg.get(k)}" for k in keys) or "all"


def _stats(vals: list[Optional[float]]) -> dict:
    v = [x for x in vals if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v)}


def compare(dirs: list[str], last: int = 3, group_by: Optional[list[str]] = None) -> dict:
    """``group_by``: the config keys that define a group (default: every key whose value differs between
    the runs, seeds and paths excluded; name them when runs also differ in keys that are not part of the
    design, e.g. a key added to the schema between runs)."""
    runs = [load_run(p) for p in find_runs(dirs)]
    cfgs = [r["config"] for r in runs if r["config"]]
    keys = sorted({k for c in cfgs for k in c})
    if group_by:
        unknown = [k for k in group_by if k not in keys]
        if unknown:
            raise ValueError(f"--group-by: {unknown} is in no run's config.json")
        diff = list(group_by)
    else:
        diff = [k for k in keys if not k.startswith(IGNORED) and len({json.dumps(c.get(k)) for c in cfgs}) > 1]
    n_iter = max((len(r["history"]) for r in runs), default=0)
    for r in runs:
        if r["problem"] is None and len(r["history"]) < n_iter:
            r["problem"] = f"partial: {len(r['history'])} of {n_iter} iterations"
        r["label"] = group_label(r["config"], diff)
        r["seed"] = r["config"].get("trainer.seed")
        r["figures"] = run_figures(r["history"], last) if r["history"] else {}
    groups: dict[str, list[dict]] = {}
    for r in runs:
        if r["problem"] is None:
            groups.setdefault(r["label"], []).append(r)
    table = {}
    for label, rs in groups.items():
        fig_keys = sorted({k for r in rs for k in r["figures"]})
        table[label] = {"n_seeds": len(rs), "seeds": [r["seed"] for r in rs],
                        **{k: _stats([r["figures"].get(k) for r in rs]) for k in fig_keys}}
    return {"group_keys": diff, "last": last, "iterations": n_iter, "groups": table,
            "runs": [{k: r[k] for k in ("path", "label", "seed", "problem", "figures")} for r in runs],
            "incomplete": [{"path": r["path"], "problem": r["problem"]} for r in runs if r["problem"]],
            "_histories": {r["path"]: r["history"] for r in runs if r["problem"] is None}}


def _fmt(s: dict) -> str:
    if s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"


def to_markdown(res: dict) -> str:
    cols = [("final_reward", "reward (final)"), ("auc_reward", "reward (AUC)"),
            ("final_reward_needs_rules", "reward needs-rules"), ("final_consult_needs_rules", "consult needs-rules"),
            ("final_consult_no_rules", "consult no-rules"), ("final_targeting_gap", "targeting gap"),
            ("auc_targeting_gap", "gap (AUC)"), ("final_malformed_call_rate", "malformed")]
    lines = [f"Groups by: {', '.join(res['group_keys']) or '(one group)'}; final = mean of the last "
             f"{res['last']} iterations, AUC = mean over all {res['iterations']}; mean [min, max] over seeds.", "",
             "| group | seeds | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for label, g in res["groups"].items():
        lines.append(f"| {label} | {g['n_seeds']} | " + " | ".join(_fmt(g.get(k, {})) for k, _ in cols) + " |")
    lines += ["", "Per run:", "", "| group | seed | " + " | ".join(c[1] for c in cols) + " | run |",
              "|---|---|" + "---|" * len(cols) + "---|"]
    for r in res["runs"]:
        f = r["figures"]
        vals = " | ".join("n/a" if f.get(k) is None else f"{f[k]:.2f}" for k, _ in cols)
        lines.append(f"| {r['label']} | {r['seed']} | {vals} | {r['path']} |")
    if res["incomplete"]:
        lines += ["", "Incomplete runs (left out of the group figures):", ""]
        lines += [f"- {x['path']}: {x['problem']}" for x in res["incomplete"]]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> Optional[str]:
    hist = res["_histories"]
    if not hist:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(n, k) for n, k in CURVES if any(k in h for hs in hist.values() for h in hs)]
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.4), squeeze=False)
    by_label: dict[str, list[list[dict]]] = {}
    for r in res["runs"]:
        if r["path"] in hist:
            by_label.setdefault(r["label"], []).append(hist[r["path"]])
    for ax, (name, key) in zip(axes[0], curves):
        for i, (label, hs) in enumerate(by_label.items()):
            n = max(len(h) for h in hs)
            xs, mean, lo, hi = [], [], [], []
            for t in range(n):
                v = [h[t][key] for h in hs if t < len(h) and isinstance(h[t].get(key), (int, float))]
                if v:
                    xs.append(t)
                    mean.append(sum(v) / len(v))
                    lo.append(min(v))
                    hi.append(max(v))
            color = f"C{i}"
            short = ", ".join(part.split("=", 1)[0].split(".")[-1] + "=" + part.split("=", 1)[1]
                              for part in label.split(", ") if "=" in part and not part.endswith("=None")) or label
            ax.plot(xs, mean, color=color, label=short)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2)
        ax.set_title(f"consultation: {name}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("iteration")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 * ((len(labels) + 2) // 3), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ascl-ray compare", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", help="run folders or sweep folders")
    p.add_argument("--out", default=None, help="where compare.md/json/png go (default: the first DIR)")
    p.add_argument("--last", type=int, default=3, help="iterations averaged for the final figures")
    p.add_argument("--group-by", default=None, help="comma-separated config keys that define a group "
                                                    "(default: every key that differs, seeds and paths excluded)")
    a = p.parse_args(argv)
    if a.last < 1:
        raise ValueError("--last: must be >= 1")
    res = compare(a.dirs, last=a.last, group_by=a.group_by.split(",") if a.group_by else None)
    out = Path(a.out or a.dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(res)
    (out / "compare.md").write_text(md)
    (out / "compare.json").write_text(json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=2))
    png = plot(res, str(out / "compare.png"))
    print(md)
    print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}" + (f", {png}" if png else ""))
    return 0
