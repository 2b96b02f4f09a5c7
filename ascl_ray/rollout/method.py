"""Methods as plug-ins, and a method as the context a rollout runs in. No Ray / vLLM / torch.

A **method** (plug-in point ``method``, registry ``METHODS``; a ``Method`` subclass registered by
name) says which tools it offers (``tools``: registered tool names, the first is the primary one)
and how its system prompt is built (``system_prompt(store, protocol, ...)`` and, for tiny models,
``short_prompt(store, protocol)``). ``in_context`` methods carry rule text that
``context_at_train`` / ``context_at_eval`` switch off (then the ``plain`` prompt is used).
Built-ins: ``plain``, ``ascl`` (offers ``retrieve_safety_rules``), ``cada``, ``rules_in_context``.

``build_context(MethodCfg | dict, tokenizer, train)`` -> ``MethodContext``: the system prompt, and
when tools are offered (``method.tools``, default: the method's own), the ``ToolProtocol`` (wire format
``method.wire_format`` over those tools, built from the rule store, the retriever options and
``method.tool_options``) that answers calls. One object used by SFT
demos, rollout workers and eval alike. The method layer composes the rule renderings
(``ascl_ray.safety.render``) with the tools' instructions (``ascl_ray.tools``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from ascl_ray.config import RENAMED_KEYS, MethodCfg
from ascl_ray.registry import Registry, get_registry
from ascl_ray.safety.render import (BASE_SYSTEM_PROMPT, codes_and_cases_section, long_rules_section,
                                    render_codes_and_cases)
from ascl_ray.safety.spec import RuleStore, load_store
from ascl_ray.tools import ToolEnv, ToolProtocol, make_tool_protocol

__all__ = ["METHODS", "Method", "register_method", "get_method", "system_prompt", "short_system_prompt",
           "MethodContext", "build_context", "as_method_cfg"]

METHODS = Registry("method", point="method")


def register_method(name: str, *, overwrite: bool = False) -> Callable:
    """Decorator: register a ``Method`` subclass (instantiated without arguments) under ``name``."""
    return METHODS.register(name, overwrite=overwrite)


class Method:
    """A method's context: the tools it offers and its system prompt (module docstring)."""

    name = ""
    tools: tuple[str, ...] = ()
    in_context = False

    def system_prompt(self, store: Optional[RuleStore], protocol: Optional[ToolProtocol], *,
                      base: str = BASE_SYSTEM_PROMPT, compact: bool = True,
                      max_cases_per_category: Optional[int] = 2) -> str:
        """``base``, then the tools' instructions when tools are offered (``protocol`` not None)."""
        if protocol is None:
            if self.tools:
                raise ValueError(f"system_prompt: method={self.name!r} needs a tool protocol, got protocol=None")
            return base
        if not hasattr(protocol, "format_instructions"):
            raise ValueError(f"system_prompt: method={self.name!r} needs a tool protocol, got protocol={protocol!r}")
        return f"{base}\n\n{protocol.format_instructions()}"

    def short_prompt(self, store: Optional[RuleStore], protocol: Optional[ToolProtocol]) -> str:
        """[ours] Context-cheap (``model.prompt_style=short``): the tools are named, their format is
        learned from SFT demonstrations."""
        if protocol is None and not self.tools:
            return BASE_SYSTEM_PROMPT
        names = [t.name for t in protocol.tools] if protocol is not None else list(self.tools)
        return f"Tool{'s' if len(names) > 1 else ''}: {', '.join(names)}."

    def _need_store(self, store: Optional[RuleStore]) -> RuleStore:
        if store is None:
            raise ValueError(f"system_prompt: method={self.name!r} needs a rule store")
        return store


@register_method("plain")
class Plain(Method):
    name = "plain"


@register_method("ascl")
class Ascl(Method):
    """Rules only through the rule-retrieval tool."""

    name = "ascl"
    tools = ("retrieve_safety_rules",)


class _SpecInContext(Method):
    in_context = True

    def short_prompt(self, store: Optional[RuleStore], protocol: Optional[ToolProtocol]) -> str:
        """CADA keeps the codes, without cases."""
        return "Safety codes:\n" + render_codes_and_cases(self._need_store(store), max_cases_per_category=0,
                                                          compact=True)


@register_method("cada")
class Cada(_SpecInContext):
    """Codes + illustrative cases in context (``compact``, ``max_cases_per_category``)."""

    name = "cada"

    def system_prompt(self, store: Optional[RuleStore], protocol: Optional[ToolProtocol], *,
                      base: str = BASE_SYSTEM_PROMPT, compact: bool = True,
                      max_cases_per_category: Optional[int] = 2) -> str:
        section = codes_and_cases_section(self._need_store(store), max_cases_per_category, compact)
        return f"{base}\n\n{section}"


@register_method("rules_in_context")
class RulesInContext(_SpecInContext):
    """Every rule with its detail in context (the long-rules baseline)."""

    name = "rules_in_context"

    def system_prompt(self, store: Optional[RuleStore], protocol: Optional[ToolProtocol], *,
                      base: str = BASE_SYSTEM_PROMPT, compact: bool = True,
                      max_cases_per_category: Optional[int] = 2) -> str:
        return f"{base}\n\n{long_rules_section(self._need_store(store))}"


def get_method(name: Union[str, Method]) -> Method:
    """The method instance for ``name`` (registered name or 'module:Class'); ValueError if unknown."""
    if isinstance(name, Method):
        return name
    reg = get_registry("method")
    try:
        cls = reg.get(name)
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"method={name!r} is not one of {tuple(reg.names())} (register one with "
                         "@register_method in a plug-in module, or give 'pkg.module:Class')") from None
    out = cls()
    if not out.name:
        out.name = str(name)
    return out


def _tool_env(store: Optional[RuleStore], cfg: Optional[MethodCfg] = None) -> ToolEnv:
    if cfg is None:
        return ToolEnv(store=store)
    return ToolEnv(store=store, retriever=cfg.retriever, retriever_opts=dict(cfg.retriever_opts or {}),
                   options=dict(cfg.tool_options or {}))


def system_prompt(method: Union[str, Method], store: Optional[RuleStore] = None, protocol: Any = "hermes", *,
                  base: str = BASE_SYSTEM_PROMPT, compact: bool = True,
                  max_cases_per_category: Optional[int] = 2) -> str:
    """System prompt for ``method``: plain: ``base``; ascl: ``base`` + the tools' instructions
    (``protocol``: a ToolProtocol, or a wire-format name to build one over the method's tools from
    ``store``); cada: ``base`` + codes + cases (``compact``, ``max_cases_per_category`` as in
    ``render_codes_and_cases``); rules_in_context: ``base`` + long rules."""
    m = get_method(method)
    if not m.tools:
        protocol = None          # a method without tools takes no protocol (whatever the caller passed)
    elif isinstance(protocol, str):
        protocol = make_tool_protocol(protocol, m.tools, env=_tool_env(store))
    return m.system_prompt(store, protocol, base=base, compact=compact, max_cases_per_category=max_cases_per_category)


def short_system_prompt(method: Union[str, Method], store: RuleStore, protocol: Any = None) -> str:
    """[ours] A context-cheap prompt for tiny models (``model.prompt_style=short``)."""
    return get_method(method).short_prompt(store, protocol)


@dataclass
class MethodContext:
    name: str
    system_text: Optional[str]
    store: RuleStore
    protocol: Any = None        # ToolProtocol when the method offers tools, else None
    retriever: Any = None       # the rule retriever behind retrieve_safety_rules, when offered
    tokenizer: Any = None
    policy_draw: str = "fixed"  # episode | fixed: how an episode's operator policy is set
    fixed_policy: dict = field(default_factory=dict)
    method: Optional[Method] = None

    @property
    def consult_tool(self) -> Optional[str]:
        """The tool whose calls count as consultation (``consulted``, IFPO's modes): the rule tool when
        offered, else the primary (first) tool."""
        if self.protocol is None:
            return None
        names = [t.name for t in self.protocol.tools]
        return "retrieve_safety_rules" if "retrieve_safety_rules" in names else names[0]

    @property
    def stop_strings(self) -> list[str]:
        return list(self.protocol.stop_strings) if self.protocol is not None else []

    def tool_turn_text(self, segment_text: str, n_prev_calls: int, policy: Optional[dict] = None) -> tuple[str, dict]:
        """The environment's answer to a segment that ended at the closing tag: the text to append
        (loss-masked) and what happened: ``valid`` (the tool answered), ``malformed``, ``limit``,
        ``category`` (of the call), ``error``, ``tool`` (the name called, if parsed).
        ``policy``: the episode's operator policy (``draw_policy``)."""
        call = self.protocol.parse(segment_text)
        res = self.protocol.run(call, call_index=n_prev_calls, policy=policy)
        info = {"valid": res.status == "ok", "malformed": res.status in ("malformed", "failed") or call is None,
                "limit": res.status == "limit", "category": (call.arguments.get("category") if call else None),
                "error": call.error if call else "closing tag without a call", "tool": call.name if call else None}
        return self.protocol.render_tool_turn(self.tokenizer, res.content), info

    def draw_policy(self, rng: Any) -> dict:
        """[ours] The deployment's current policy for one episode: each operator-set category of the
        rule store gets comply or refuse, drawn uniformly (``method.policy_draw=episode``); with
        ``fixed``, the spec's defaults (plus ``method.policy`` overrides)."""
        cats = self.store.operator_categories
        if self.policy_draw == "episode":
            return {c: rng.choice(("comply", "refuse")) for c in cats}
        return {c: self.fixed_policy.get(c, self.store[c].policy.default) for c in cats}

    def retriever_dump(self) -> str:
        """All rule text the environment can ever show (for training the tiny tokenizer)."""
        texts = [render_codes_and_cases(self.store, max_cases_per_category=None, compact=False)]
        texts += [t for c in self.store.categories if c.policy for t in (c.policy.comply, c.policy.refuse)]
        return "\n".join(texts)


_METHOD_KEYS = tuple(f.name for f in dataclasses.fields(MethodCfg))


def as_method_cfg(method_cfg: Union[MethodCfg, Mapping[str, Any]]) -> MethodCfg:
    """``method_cfg`` as a MethodCfg: a MethodCfg is kept; a mapping fills its missing keys from the
    MethodCfg defaults, except ``prompt_style`` (MethodCfg's default interpolates the model config,
    which a bare dict has not): "full". An unknown key is a ValueError naming it."""
    if isinstance(method_cfg, MethodCfg):
        return method_cfg
    if not isinstance(method_cfg, Mapping):
        raise TypeError(f"method config must be a MethodCfg or a mapping, got {type(method_cfg).__name__}")
    for old, new in RENAMED_KEYS.items():
        if old.startswith("method.") and old[len("method."):] in method_cfg:
            raise ValueError(f"method config: key {old[len('method.'):]!r} was renamed to {new[len('method.'):]!r}")
    unknown = sorted(set(method_cfg) - set(_METHOD_KEYS))
    if unknown:
        raise ValueError(f"method config: unknown key(s) {unknown}; known: {list(_METHOD_KEYS)}")
    return MethodCfg(**{"prompt_style": "full", **dict(method_cfg)})


def build_context(method_cfg: Union[MethodCfg, Mapping[str, Any]], tokenizer: Any = None,
                  train: bool = True) -> MethodContext:
    """The context of ``method_cfg`` (MethodCfg, or a dict of its fields). ``train=False`` (eval):
    ``context_at_eval`` decides in-context rule text and operator verdicts are fixed (never drawn).
    An unresolved ``prompt_style`` interpolation (a MethodCfg built without a model config) is "full"."""
    cfg = as_method_cfg(method_cfg)
    method = get_method(cfg.name)
    store = load_store(cfg.spec_path or "default")
    protocol = None
    tools = tuple(cfg.tools) if cfg.tools is not None else method.tools
    if tools:
        protocol = make_tool_protocol(cfg.wire_format, tools, env=_tool_env(store, cfg),
                                      max_tool_calls=cfg.max_tool_calls)
    in_context = cfg.context_at_train if train else cfg.context_at_eval
    effective = method if (not method.in_context or in_context) else get_method("plain")
    if cfg.system_prompt:
        system = cfg.system_prompt
    elif cfg.prompt_style == "short":
        system = effective.short_prompt(store, protocol)
    else:
        system = effective.system_prompt(store, protocol)
    unknown = sorted(set(cfg.policy or {}) - set(store.operator_categories))
    if unknown:
        raise ValueError(f"method.policy: {unknown} are not operator-set categories of the spec "
                         f"({store.operator_categories})")
    retriever = next((t.retriever for t in protocol.tools if getattr(t, "retriever", None) is not None), None) \
        if protocol is not None else None
    return MethodContext(name=cfg.name, system_text=system, store=store, protocol=protocol, retriever=retriever,
                         tokenizer=tokenizer, policy_draw=cfg.policy_draw if train else "fixed",
                         fixed_policy=dict(cfg.policy or {}), method=method)
