"""A method (plain | ascl | cada | rules_in_context) as the context a rollout runs in: the system
prompt, and for ASCL the tool protocol + retriever that answer rule look-ups. Built from
``conf/method/*.yaml``; one object used by SFT demos, rollout workers and eval alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ascl_ray.rollout.protocol import make_protocol
from ascl_ray.safety.render import render_codes_and_cases, system_prompt
from ascl_ray.safety.retrieval import make_retriever
from ascl_ray.safety.spec import RuleStore, load_store


@dataclass
class MethodContext:
    name: str
    system_text: Optional[str]
    store: RuleStore
    protocol: Any = None        # ToolProtocol when the tool is available (ascl), else None
    retriever: Any = None
    tokenizer: Any = None
    policy_draw: str = "fixed"  # episode | fixed: how an episode's operator policy is set
    fixed_policy: dict = field(default_factory=dict)

    @property
    def stop_strings(self) -> list[str]:
        return list(self.protocol.stop_strings) if self.protocol is not None else []

    def tool_turn_text(self, segment_text: str, n_prev_calls: int, policy: Optional[dict] = None) -> tuple[str, dict]:
        """The environment's answer to a segment that ended at the closing tag: the text to append
        (loss-masked) and what happened: ``valid`` (rules returned), ``malformed``, ``limit``, ``category``.
        ``policy``: the episode's operator policy (``draw_policy``)."""
        call = self.protocol.parse(segment_text)
        res = self.protocol.run(call, self.retriever, call_index=n_prev_calls, policy=policy)
        info = {"valid": res.status == "ok", "malformed": res.status in ("malformed", "failed") or call is None,
                "limit": res.status == "limit", "category": (call.arguments.get("category") if call else None),
                "error": call.error if call else "closing tag without a call"}
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


def short_system_prompt(method: str, store: RuleStore) -> str:
    """[ours] A context-cheap prompt for tiny models (``model.prompt_style=short``): the tool is named
    but its format is learned from SFT demonstrations; CADA keeps the codes, without cases."""
    if method == "ascl":
        return "Tool: retrieve_safety_rules."
    if method in ("cada", "rules_in_context"):
        return "Safety codes:\n" + render_codes_and_cases(store, max_cases_per_category=0, compact=True)
    return "You are a helpful assistant."


def build_context(method_cfg: dict, tokenizer: Any = None, train: bool = True) -> MethodContext:
    m = {"protocol": "hermes", "retriever": "by_category", "retriever_opts": {}, "spec_path": None,
         "max_tool_calls": 1, "context_at_train": True, "context_at_eval": True, "system_prompt": None,
         "policy_draw": "fixed", "policy": {}, **method_cfg}
    name = m["name"]
    store = load_store(m["spec_path"] or "default")
    protocol = retriever = None
    if name == "ascl":
        retriever = make_retriever(m["retriever"], store, **dict(m["retriever_opts"] or {}))
        protocol = make_protocol(m["protocol"], categories=retriever.categories, max_tool_calls=m["max_tool_calls"])
    in_context = m["context_at_train"] if train else m["context_at_eval"]
    effective = name if (name not in ("cada", "rules_in_context") or in_context) else "plain"
    if m["system_prompt"]:
        system = m["system_prompt"]
    elif m.get("prompt_style", "full") == "short":
        system = short_system_prompt(effective, store)
    else:
        system = system_prompt(effective, store, protocol or m["protocol"])
    unknown = sorted(set(m["policy"] or {}) - set(store.operator_categories))
    if unknown:
        raise ValueError(f"method.policy: {unknown} are not operator-set categories of the spec "
                         f"({store.operator_categories})")
    return MethodContext(name=name, system_text=system, store=store, protocol=protocol, retriever=retriever,
                         tokenizer=tokenizer, policy_draw=m["policy_draw"] if train else "fixed",
                         fixed_policy=dict(m["policy"] or {}))
