"""The safety rule store: categories -> statutes (rules) + precedents (cases).

One spec file format (YAML or JSON, chosen by extension, same schema)::

    version: 1
    name: ascl-default
    description: ...
    categories:
      - name: violence_weapons          # unique; what the tool's `category` argument names
        description: Violence and weapons
        rules:                          # statutes (short simple codes)
          - {id: vw.1, text: "...", detail: "optional longer wording"}
        cases:                          # precedents, incl. contrast pairs
          - {id: vw.c1, request: "...", verdict: comply, rationale: "...", contrast_of: vw.c2}
      - name: gambling                  # an operator-set category: the deployment's current policy
        description: Betting tips       # decides (comply | refuse); training draws it per episode
        policy: {default: comply, comply: "Allowed now: help.", refuse: "Not allowed now: decline."}

Rule and case ids are unique across the whole store; ``contrast_of`` must name another
case id of the store. Validation errors name the file and the field path, e.g.
``spec.yaml: categories[2].cases[1].verdict: 'deny' not in ('comply', 'safe_complete', 'refuse')``.

Loaders for the real corpora (never copied into the repo) are in ``corpora.py``, registered as
corpus loaders (plug-in point ``corpus_loader``: ``loader(folder, **opts) -> RuleStore`` with
``loader.matches(folder) -> bool``); ``load_store(source)`` dispatches between a spec file,
``default`` and those folders. This module never imports ``corpora`` (no import cycle): the
registry imports the built-in loaders when asked. No Ray / vLLM / torch imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import yaml

from ascl_ray.registry import Registry, get_registry

VERDICTS = ("comply", "safe_complete", "refuse")
DEFAULT_SPEC_PATH = Path(__file__).with_name("default_spec.yaml")
_TOP_KEYS = ("version", "name", "description", "categories")
_CAT_KEYS = ("name", "description", "rules", "cases", "policy")
POLICY_VERDICTS = ("comply", "refuse")
_POLICY_KEYS = ("default",) + POLICY_VERDICTS
_RULE_KEYS = ("id", "text", "detail")
_CASE_KEYS = ("id", "request", "verdict", "rationale", "contrast_of")

# corpus folder loaders: name -> loader(folder, **opts) -> RuleStore (built-ins: ascl_ray.safety.corpora)
CORPUS_LOADERS = Registry("corpus loader", point="corpus_loader")


def register_corpus_loader(name: str, *, matches: Callable[[Path], bool], expects: str, priority: int = 100,
                           overwrite: bool = False) -> Callable:
    """Decorator: register ``loader(folder, **opts) -> RuleStore`` for folders where ``matches(folder)``;
    ``expects`` (what such a folder holds) names it in errors; tried by ``priority`` (lower first), then name."""
    reg = CORPUS_LOADERS.register(name, overwrite=overwrite)

    def deco(fn: Callable) -> Callable:
        fn.matches, fn.expects, fn.priority = matches, expects, priority  # type: ignore[attr-defined]
        return reg(fn)

    return deco


class SpecError(ValueError):
    """A spec failed to load or validate. ``errors`` holds every ``file: path: message`` line."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Rule:
    """A statute: a short simple code. ``detail`` is an optional longer wording (long-rules baseline)."""

    id: str
    text: str
    detail: str = ""


@dataclass(frozen=True)
class Case:
    """A precedent: a request, the verdict it deserves, why; ``contrast_of`` links a contrast pair."""

    id: str
    request: str
    verdict: str
    rationale: str = ""
    contrast_of: Optional[str] = None


@dataclass(frozen=True)
class OperatorPolicy:
    """[ours] An operator-set category: which of ``comply`` / ``refuse`` applies is the deployment's
    *current* policy, not a fixed code. ``comply`` / ``refuse`` are the rule texts the tool shows for
    each; ``default`` applies when no policy is given (eval, CADA's in-context spec)."""

    default: str
    comply: str
    refuse: str

    def text(self, verdict: str) -> str:
        if verdict not in POLICY_VERDICTS:
            raise ValueError(f"operator policy verdict {verdict!r} not in {POLICY_VERDICTS}")
        return self.comply if verdict == "comply" else self.refuse


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    rules: tuple[Rule, ...] = ()
    cases: tuple[Case, ...] = ()
    policy: Optional[OperatorPolicy] = None

    def verdict(self, policy: Optional[dict] = None) -> Optional[str]:
        """The current verdict of an operator-set category under ``policy`` ({category: verdict}), else None."""
        if self.policy is None:
            return None
        return (policy or {}).get(self.name, self.policy.default)


@dataclass
class RuleStore:
    categories: list[Category]
    name: str = "spec"
    description: str = ""
    version: int = 1
    _index: dict[str, Category] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {c.name: c for c in self.categories}

    # ---- access -------------------------------------------------------------------------
    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def __getitem__(self, name: str) -> Category:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def get(self, name: str) -> Optional[Category]:
        return self._index.get(name)

    def iter_rules(self) -> Iterator[tuple[Category, Rule]]:
        for c in self.categories:
            for r in c.rules:
                yield c, r

    def iter_cases(self) -> Iterator[tuple[Category, Case]]:
        for c in self.categories:
            for k in c.cases:
                yield c, k

    @property
    def operator_categories(self) -> list[str]:
        """Names of the operator-set categories (their verdict is the deployment's current policy)."""
        return [c.name for c in self.categories if c.policy is not None]

    @property
    def n_rules(self) -> int:
        return sum(len(c.rules) for c in self.categories)

    @property
    def n_cases(self) -> int:
        return sum(len(c.cases) for c in self.categories)

    def subset(self, names: list[str]) -> "RuleStore":
        """A store restricted to ``names`` (in that order); contrast links leaving it are dropped."""
        missing = [n for n in names if n not in self._index]
        if missing:
            raise KeyError(f"unknown categories {missing}; valid: {self.category_names}")
        cats = [self._index[n] for n in names]
        ids = {k.id for c in cats for k in c.cases}
        cats = [
            Category(c.name, c.description, c.rules,
                     tuple(k if k.contrast_of in ids or k.contrast_of is None
                           else Case(k.id, k.request, k.verdict, k.rationale, None) for k in c.cases),
                     c.policy)
            for c in cats
        ]
        return RuleStore(cats, name=self.name, description=self.description, version=self.version)

    # ---- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def rule(r: Rule) -> dict:
            d = {"id": r.id, "text": r.text}
            if r.detail:
                d["detail"] = r.detail
            return d

        def case(k: Case) -> dict:
            d = {"id": k.id, "request": k.request, "verdict": k.verdict, "rationale": k.rationale}
            if k.contrast_of is not None:
                d["contrast_of"] = k.contrast_of
            return d

        def cat(c: Category) -> dict:
            d = {"name": c.name, "description": c.description,
                 "rules": [rule(r) for r in c.rules], "cases": [case(k) for k in c.cases]}
            if c.policy is not None:
                d["policy"] = {"default": c.policy.default, "comply": c.policy.comply, "refuse": c.policy.refuse}
            return d

        return {"version": self.version, "name": self.name, "description": self.description,
                "categories": [cat(c) for c in self.categories]}

    @classmethod
    def from_dict(cls, data: Any, source: str = "<spec>") -> "RuleStore":
        return _Validator(source).store(data)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RuleStore":
        path = Path(path)
        src = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SpecError([f"{src}: cannot read: {e}"]) from e
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise SpecError([f"{src}: invalid JSON at line {e.lineno} col {e.colno}: {e.msg}"]) from e
        elif path.suffix.lower() in (".yaml", ".yml"):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1} col {mark.column + 1}" if mark else ""
                raise SpecError([f"{src}: invalid YAML{where}: {getattr(e, 'problem', e)}"]) from e
        else:
            raise SpecError([f"{src}: unknown spec format {path.suffix!r}; use .yaml, .yml or .json"])
        return cls.from_dict(data, source=src)

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        elif path.suffix.lower() in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100),
                            encoding="utf-8")
        else:
            raise ValueError(f"{path}: unknown spec format {path.suffix!r}; use .yaml, .yml or .json")
        return path


class _Validator:
    """Collects every error as ``file: field.path: message``."""

    def __init__(self, source: str):
        self.source = source
        self.errors: list[str] = []

    def err(self, where: str, msg: str) -> None:
        self.errors.append(f"{self.source}: {where}: {msg}" if where else f"{self.source}: {msg}")

    def _mapping(self, obj: Any, where: str, allowed: tuple[str, ...]) -> bool:
        if not isinstance(obj, dict):
            self.err(where, f"expected a mapping, got {type(obj).__name__}")
            return False
        for k in obj:
            if k not in allowed:
                self.err(f"{where}.{k}" if where else str(k), f"unknown field; allowed: {', '.join(allowed)}")
        return True

    def _str(self, obj: dict, key: str, where: str, required: bool = True, nonempty: bool = True) -> str:
        path = f"{where}.{key}" if where else key
        if key not in obj or obj[key] is None:
            if required:
                self.err(path, "missing required field")
            return ""
        val = obj[key]
        if not isinstance(val, str):
            self.err(path, f"expected a string, got {type(val).__name__} {val!r}")
            return ""
        if nonempty and not val.strip():
            self.err(path, "must not be empty")
        return val

    def _list(self, obj: dict, key: str, where: str) -> list:
        path = f"{where}.{key}"
        val = obj.get(key, [])
        if val is None:
            return []
        if not isinstance(val, list):
            self.err(path, f"expected a list, got {type(val).__name__}")
            return []
        return val

    def store(self, data: Any) -> RuleStore:
        if not self._mapping(data, "", _TOP_KEYS):
            raise SpecError(self.errors)
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            self.err("version", f"unsupported version {version!r}; expected 1")
        name = self._str(data, "name", "", required=False) or "spec"
        desc = self._str(data, "description", "", required=False, nonempty=False)
        raw_cats = data.get("categories")
        if not isinstance(raw_cats, list) or not raw_cats:
            self.err("categories", "expected a non-empty list of categories")
            raise SpecError(self.errors)
        cats: list[Category] = []
        names: dict[str, str] = {}
        ids: dict[str, str] = {}
        case_ids: set[str] = set()
        links: list[tuple[str, str, str]] = []
        for i, rc in enumerate(raw_cats):
            w = f"categories[{i}]"
            if not self._mapping(rc, w, _CAT_KEYS):
                continue
            cname = self._str(rc, "name", w)
            if cname in names:
                self.err(f"{w}.name", f"duplicate category {cname!r} (first at {names[cname]})")
            elif cname:
                names[cname] = w
            cdesc = self._str(rc, "description", w, nonempty=False)
            rules = []
            for j, rr in enumerate(self._list(rc, "rules", w)):
                rw = f"{w}.rules[{j}]"
                if not self._mapping(rr, rw, _RULE_KEYS):
                    continue
                rid = self._id(rr, rw, ids)
                rules.append(Rule(rid, self._str(rr, "text", rw),
                                  self._str(rr, "detail", rw, required=False, nonempty=False)))
            cases = []
            for j, rk in enumerate(self._list(rc, "cases", w)):
                kw = f"{w}.cases[{j}]"
                if not self._mapping(rk, kw, _CASE_KEYS):
                    continue
                kid = self._id(rk, kw, ids)
                case_ids.add(kid)
                verdict = self._str(rk, "verdict", kw)
                if verdict and verdict not in VERDICTS:
                    self.err(f"{kw}.verdict", f"{verdict!r} not in {VERDICTS}")
                contrast = self._str(rk, "contrast_of", kw, required=False) or None
                if contrast is not None:
                    links.append((f"{kw}.contrast_of", kid, contrast))
                cases.append(Case(kid, self._str(rk, "request", kw), verdict,
                                  self._str(rk, "rationale", kw, required=False, nonempty=False), contrast))
            policy = self._policy(rc.get("policy"), f"{w}.policy") if rc.get("policy") is not None else None
            cats.append(Category(cname, cdesc, tuple(rules), tuple(cases), policy))
        for where, kid, target in links:
            if target == kid:
                self.err(where, f"case {kid!r} cannot be its own contrast")
            elif target not in case_ids:
                self.err(where, f"{target!r} is not a case id of this spec")
        if self.errors:
            raise SpecError(self.errors)
        return RuleStore(cats, name=name, description=desc, version=1)

    def _policy(self, obj: Any, where: str) -> Optional[OperatorPolicy]:
        if not self._mapping(obj, where, _POLICY_KEYS):
            return None
        texts = {v: self._str(obj, v, where) for v in POLICY_VERDICTS}
        default = self._str(obj, "default", where)
        if default and default not in POLICY_VERDICTS:
            self.err(f"{where}.default", f"{default!r} not in {POLICY_VERDICTS}")
        return OperatorPolicy(default, texts["comply"], texts["refuse"])

    def _id(self, obj: dict, where: str, seen: dict[str, str]) -> str:
        rid = self._str(obj, "id", where)
        if rid in seen:
            self.err(f"{where}.id", f"duplicate id {rid!r} (first at {seen[rid]})")
        elif rid:
            seen[rid] = where
        return rid


def load_default_store() -> RuleStore:
    """The bundled ``default_spec.yaml`` (our short codes + contrast cases)."""
    return RuleStore.load(DEFAULT_SPEC_PATH)


def load_store(source: Union[str, Path, None] = "default", **opts: Any) -> RuleStore:
    """Build a store from ``default``/None, a spec file (.yaml/.yml/.json), or a corpus folder.

    Folders: the registered corpus loaders, built-ins ``openai_model_spec`` (has sections.jsonl +
    cases.jsonl) or ``aegis_safety_policy`` (has aegis_v1_policy.json). ``opts`` go to the loader.
    """
    if source is None or str(source) == "default":
        return load_default_store()
    path = Path(source)
    if path.is_dir():
        loaders = sorted(get_registry("corpus_loader").items(), key=lambda kv: (getattr(kv[1], "priority", 100), kv[0]))
        for _, loader in loaders:
            if loader.matches(path):
                return loader(path, **opts)
        kinds = " nor ".join(f"{name} ({getattr(loader, 'expects', '?')})" for name, loader in loaders)
        raise SpecError([f"{path}: folder is neither {kinds}"])
    if opts:
        raise TypeError(f"load_store: options {sorted(opts)} only apply to corpus folders")
    return RuleStore.load(path)
