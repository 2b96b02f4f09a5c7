"""Safety rule store (statutes + precedent cases), retrievers, and in-context renderings.

No Ray / vLLM / DeepSpeed / torch imports, and nothing from ``ascl_ray.tools`` or ``ascl_ray.rollout``
(layering: registry < safety < tools < rollout). See ``spec.py`` for the spec file schema. The
per-method system prompts (formerly ``system_prompt`` / ``METHODS`` here) are in ``ascl_ray.rollout.method``.
"""

from ascl_ray.safety.spec import (VERDICTS, Case, Category, Rule, RuleStore, SpecError, load_default_store,
                                  load_store)
from ascl_ray.safety.corpora import load_aegis_policy, load_openai_model_spec
from ascl_ray.safety.render import codes_and_cases_section, long_rules_section, render_codes_and_cases, render_long_rules
from ascl_ray.safety.retrieval import RETRIEVERS, ToolError, make_retriever, register_retriever

__all__ = [
    "VERDICTS", "Case", "Category", "Rule", "RuleStore", "SpecError", "load_default_store", "load_store",
    "load_aegis_policy", "load_openai_model_spec", "codes_and_cases_section", "long_rules_section",
    "render_codes_and_cases", "render_long_rules", "RETRIEVERS", "ToolError", "make_retriever", "register_retriever",
]
