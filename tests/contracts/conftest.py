"""Contract tests: every entry of a plug-in registry (``ascl_ray.registry``) is tested by being registered.

The tests parametrise over ``get_registry(point).names()`` at collection time, so the built-ins are
covered, and so is every module imported here first: the shipped test-only judges
(``ascl_ray.reward.testing``) and whatever ``$ASCL_CONTRACT_PLUGINS`` names (comma-separated modules)::

    ASCL_CONTRACT_PLUGINS=my_pkg.my_rules,my_pkg.my_judges pytest -q tests/contracts

A plug-in judge that needs build options (a model, an engine) gets them from ``JUDGE_BUILD`` in
``test_contracts_judges.py``; every other entry needs no set-up.
"""

from __future__ import annotations

import os

from ascl_ray.registry import import_plugins

CONTRACT_PLUGINS = ["ascl_ray.reward.testing"] + [
    m.strip() for m in os.environ.get("ASCL_CONTRACT_PLUGINS", "").split(",") if m.strip()
]
import_plugins(CONTRACT_PLUGINS)
