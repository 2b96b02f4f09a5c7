"""The rows and the markdown table every benchmark module prints (``make bench``, ``bench_trl``, ``bench_overlap``)."""

from __future__ import annotations


def _row(section: str, name: str, value: float, unit: str, note: str = "") -> dict:
    return {"section": section, "name": name, "value": value, "unit": unit, "note": note}


def format_table(rows: list[dict]) -> str:
    lines = ["| section | metric | value | unit | note |", "| --- | --- | ---: | --- | --- |"]
    for r in rows:
        v = r["value"]
        vs = f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        lines.append(f"| {r['section']} | {r['name']} | {vs} | {r['unit']} | {r['note']} |")
    return "\n".join(lines)
