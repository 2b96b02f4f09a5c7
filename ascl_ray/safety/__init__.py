"""Safety rule store (statutes + precedent cases), retrievers, and in-context renderings.

No Ray / vLLM / DeepSpeed / torch imports. See ``spec.py`` for the spec file schema.
"""

from ascl_ray.safety.spec import (VERDICTS, Case, Category, Rule, RuleStore, SpecError, load_default_store,
                                  load_store)
from ascl_ray.safety.corpora import load_aegis_policy, load_openai_model_spec
from ascl_ray.safety.render import (METHODS, render_codes_and_cases, render_long_rules, system_prompt)
from ascl_ray.safety.retrieval import RETRIEVERS, ToolError, make_retriever

__all__ = [
    "VERDICTS", "Case", "Category", "Rule", "RuleStore", "SpecError", "load_default_store", "load_store",
    "load_aegis_policy", "load_openai_model_spec", "METHODS", "render_codes_and_cases", "render_long_rules",
    "system_prompt", "RETRIEVERS", "ToolError", "make_retriever",
]
