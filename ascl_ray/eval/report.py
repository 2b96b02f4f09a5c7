"""Evaluation report: ``report.md`` (method x benchmark tables with 95% CIs), ``report.json`` and
``report.png`` (grouped bars: safety rate / refusal rate / accuracy avg@k / consultation rate per
benchmark, one bar per method, CI error bars).

Input: one ``summarize()`` output (see :mod:`ascl_ray.eval.metrics`) or several, by method::

    write_report(summary, out_dir, {"method": "ifpo", "model": "...", "step": 200})
    write_report(None, out_dir, meta, summaries={"grpo": s1, "ifpo": s2})
    write_report({"grpo": s1, "ifpo": s2}, out_dir, meta)   # same as the line above

Pure python + matplotlib (Agg backend); no ray / vllm / deepspeed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ascl_ray.eval.metrics import HEADLINE, METRIC_ORDER, PROMPT_TYPES

PROPORTIONS = {"safety_rate", "refusal_rate", "avg_at_k", "pass_at_k", "consultation_rate"}
PLOT_METRICS = ("safety_rate", "refusal_rate", "avg_at_k", "consultation_rate")
DIRECTION = {"safety_rate": "↑", "refusal_rate": "↓", "avg_at_k": "↑", "pass_at_k": "↑"}


def metric_label(metric: str, k: Optional[int] = None) -> str:
    kk = "k" if k is None else str(k)
    return {
        "safety_rate": "safety rate (%)",
        "refusal_rate": "refusal rate (%)",
        "avg_at_k": f"accuracy avg@{kk} (%)",
        "pass_at_k": f"pass@{kk} (%)",
        "consultation_rate": "consultation rate (%)",
        "mean_response_len": "mean response length (tokens)",
        "mean_tool_calls": "mean tool calls",
        "mean_reward": "mean reward",
    }.get(metric, metric)


def _is_summary(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "benchmarks" in obj


def _normalize(summary: Any, summaries: Optional[Mapping[str, Any]], meta: Mapping[str, Any]) -> dict[str, dict]:
    if summaries is not None:
        if summary is not None:
            raise ValueError("write_report: give either summary or summaries, not both")
        out = dict(summaries)
    elif _is_summary(summary):
        out = {str(meta.get("method") or "model"): summary}
    elif isinstance(summary, Mapping) and summary and all(_is_summary(v) for v in summary.values()):
        out = dict(summary)
    else:
        raise ValueError("write_report: summary must be a summarize() result (a dict with 'benchmarks') "
                         "or a dict {method: summarize() result}")
    if not out:
        raise ValueError("write_report: no summaries")
    for m, s in out.items():
        if not _is_summary(s):
            raise ValueError(f"write_report: summary of method {m!r} has no 'benchmarks' key")
    return out


def _benchmarks(summaries: Mapping[str, Mapping]) -> list[tuple[str, str]]:
    """[(benchmark, prompt_type)] over all methods, ordered by prompt type then first appearance."""
    seen: dict[str, str] = {}
    for s in summaries.values():
        for b, blk in s["benchmarks"].items():
            seen.setdefault(b, blk.get("prompt_type", "mixed"))
    order = {t: i for i, t in enumerate(PROMPT_TYPES)}
    return sorted(seen.items(), key=lambda bt: order.get(bt[1], len(order)))


def _est(s: Mapping, bench: str, metric: str, group: str = "benchmarks") -> Optional[Mapping]:
    return s.get(group, {}).get(bench, {}).get("metrics", {}).get(metric)


def _fmt(est: Optional[Mapping], metric: str) -> str:
    if not est or est.get("value") is None or (isinstance(est["value"], float) and math.isnan(est["value"])):
        return "–"
    scale, nd = (100.0, 1) if metric in PROPORTIONS else (1.0, 3 if metric in ("mean_tool_calls", "mean_reward") else 1)
    v = f"{est['value'] * scale:.{nd}f}"
    if est.get("lo") is None or est.get("hi") is None:
        return f"{v} (n={est.get('n', '?')})"
    return f"{v} [{est['lo'] * scale:.{nd}f}, {est['hi'] * scale:.{nd}f}]"


def _md_escape(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return out


def _k_of(summaries: Mapping[str, Mapping]) -> Optional[int]:
    ks = {s.get("k") for s in summaries.values()}
    return ks.pop() if len(ks) == 1 else None


def render_markdown(summaries: Mapping[str, Mapping], meta: Mapping[str, Any]) -> str:
    methods = list(summaries)
    benches = _benchmarks(summaries)
    k = _k_of(summaries)
    lines = ["# ascl-ray evaluation report", ""]
    if meta:
        lines += _table(["key", "value"], [[str(key), json.dumps(v, default=str) if not isinstance(v, str) else v]
                                           for key, v in meta.items()]) + [""]
    lines += [f"Methods: {', '.join(methods)}. Values in %, except lengths, tool calls and reward; "
              "[lo, hi] = 95% CI (Wilson for proportions with one sample per prompt, else normal over "
              "per-prompt values). ↑ higher is better, ↓ lower is better (refusal rate on "
              "over-refusal sets).", ""]
    # headline: each benchmark's main metric by prompt type
    lines += ["## Headline", ""]
    header = ["method"] + [f"{b} {metric_label(HEADLINE.get(t, 'safety_rate'), k).split(' (')[0]}"
                           f"{DIRECTION.get(HEADLINE.get(t, ''), '')}" for b, t in benches]
    rows = [[m] + [_fmt(_est(summaries[m], b, HEADLINE.get(t, "safety_rate")), HEADLINE.get(t, "safety_rate"))
                   for b, t in benches] for m in methods]
    lines += _table(header, rows) + [""]
    # pooled by prompt type
    types = [t for t in PROMPT_TYPES if any(t in s.get("by_prompt_type", {}) for s in summaries.values())]
    if types:
        lines += ["## Pooled by prompt type", ""]
        metrics = [(t, mt) for t in types for mt in (HEADLINE[t], "consultation_rate")]
        header = ["method"] + [f"{t}: {metric_label(mt, k).split(' (')[0]}" for t, mt in metrics]
        rows = [[m] + [_fmt(_est(summaries[m], t, mt, "by_prompt_type"), mt) for t, mt in metrics] for m in methods]
        lines += _table(header, rows) + [""]
    # one table per metric
    lines += ["## All metrics", ""]
    for metric in METRIC_ORDER:
        cols = [b for b, _ in benches if any(_est(summaries[m], b, metric) for m in methods)]
        if not cols:
            continue
        lines += [f"### {metric_label(metric, k)}", ""]
        rows = [[m] + [_fmt(_est(summaries[m], b, metric), metric) for b in cols] for m in methods]
        lines += _table(["method"] + cols, rows) + [""]
    lines += ["## Sizes (prompts / samples)", ""]
    rows = []
    for b, t in benches:
        cells = []
        for m in methods:
            blk = summaries[m]["benchmarks"].get(b)
            cells.append(f"{blk['n_prompts']} / {blk['n_samples']}" if blk else "–")
        rows.append([b, t] + cells)
    lines += _table(["benchmark", "prompt_type"] + methods, rows) + [""]
    return "\n".join(lines)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item"):  # numpy / torch scalars
        return _clean(obj.item())
    return str(obj)


def plot_summaries(summaries: Mapping[str, Mapping], path: Union[str, Path], title: str = "") -> Path:
    """Grouped bars (one subplot per metric in PLOT_METRICS, one bar per method) with CI error bars."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    methods = list(summaries)
    benches = [b for b, _ in _benchmarks(summaries)]
    k = _k_of(summaries)
    fig, axes = plt.subplots(2, 2, figsize=(max(10.0, 1.1 * len(benches) + 4), 8.5), squeeze=False)
    width = 0.8 / max(1, len(methods))
    cmap = plt.get_cmap("tab10")
    for ax, metric in zip(axes.flat, PLOT_METRICS):
        cols = [b for b in benches if any(_est(summaries[m], b, metric) for m in methods)]
        ax.set_title(metric_label(metric, k) + (" " + DIRECTION[metric] if metric in DIRECTION else ""))
        if not cols:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for j, m in enumerate(methods):
            xs, vals, err_lo, err_hi = [], [], [], []
            for i, b in enumerate(cols):
                e = _est(summaries[m], b, metric)
                if not e or e.get("value") is None:
                    continue
                v = 100.0 * e["value"]
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                vals.append(v)
                err_lo.append(v - 100.0 * e["lo"] if e.get("lo") is not None else 0.0)
                err_hi.append(100.0 * e["hi"] - v if e.get("hi") is not None else 0.0)
            if xs:
                ax.bar(xs, vals, width, yerr=[err_lo, err_hi], capsize=2, label=m, color=cmap(j % 10))
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = [], []
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        if len(h) > len(handles):
            handles, labels = h, lab
    if handles:
        fig.legend(handles, labels, loc="upper right", ncol=min(len(methods), 6), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(
    summary: Optional[Mapping[str, Any]],
    out_dir: Union[str, Path],
    meta: Optional[Mapping[str, Any]] = None,
    *,
    summaries: Optional[Mapping[str, Mapping[str, Any]]] = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and (``plot=True``) ``report.png`` into ``out_dir``.

    ``summary``: one ``summarize()`` result (method name = ``meta['method']`` or ``model``), or a
    dict ``{method: summary}``; alternatively pass ``summaries={method: summary}``.
    Returns ``{"md": path, "json": path, "png": path}`` (no ``png`` when ``plot=False``).
    """
    meta = dict(meta or {})
    sums = _normalize(summary, summaries, meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"md": out / "report.md", "json": out / "report.json"}
    _write_text(paths["md"], render_markdown(sums, meta))
    payload = {"meta": meta, "methods": list(sums), "summaries": sums}
    _write_text(paths["json"], json.dumps(_clean(payload), indent=2, allow_nan=False) + "\n")
    if plot:
        title = " / ".join(str(meta[k]) for k in ("model", "step") if k in meta)
        paths["png"] = plot_summaries(sums, out / "report.png", title=title)
    return paths
