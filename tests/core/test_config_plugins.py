"""Config names come from the registries (built-ins and plug-ins alike); renamed keys name the new key;
plug-in tools are offered by config (``method.tools``) and reach the method context."""

import sys
from pathlib import Path

import pytest

from ascl_ray.cli import compose
from ascl_ray.config import ConfigError

TOOLS_DIR = str(Path(__file__).resolve().parents[1] / "tools")


# (estimator, loss, judge names: tests/contracts/test_contracts_registries.py)
@pytest.mark.parametrize("override, key, registered", [
    ("method.name=no_such_method", "method.name", "rules_in_context"),
    ("method.wire_format=xml", "method.wire_format", "plain_tags"),
    ("method.retriever=dense", "method.retriever", "bm25"),
    ("trainer.sync_channel=rdma", "trainer.sync_channel", "object_store"),
    ("method.tools=[retrieve_safety_rules,abacus]", "method.tools[1]", "retrieve_safety_rules"),
])
def test_unknown_names_list_the_registered_ones(override, key, registered):
    with pytest.raises(ConfigError) as e:
        compose([override])
    msg = str(e.value)
    assert msg.startswith(f"{key}:") and registered in msg, msg


def test_renamed_key_names_the_new_key():
    with pytest.raises(ConfigError, match=r"^method\.protocol: renamed to method\.wire_format"):
        compose(["+method.protocol=plain_tags"])
    from ascl_ray.rollout.method import build_context

    with pytest.raises(ValueError, match="'protocol' was renamed to 'wire_format'"):
        build_context({"name": "ascl", "protocol": "hermes"})


def test_bad_plugin_module_names_the_key():
    with pytest.raises(ConfigError, match=r"^algorithm\.plugins: .*no_such_plugin_mod_xyz"):
        compose(["algorithm.plugins=[no_such_plugin_mod_xyz]"])


def test_plugin_tool_offered_by_config(monkeypatch, tiny_tokenizer):
    """A tool registered by a plug-in module is validated by name once the module is in algorithm.plugins,
    and method.tools puts it next to the rule tool of the ascl method (its options via method.tool_options)."""
    monkeypatch.syspath_prepend(TOOLS_DIR)
    with pytest.raises(ConfigError, match=r"^method\.tools\[1\]"):
        compose(["method.tools=[retrieve_safety_rules,calculator_not_registered]"])
    cfg = compose(["algorithm.plugins=[ascl_calc_tool]", "method.tools=[retrieve_safety_rules,calculator]",
                   "model.prompt_style=full"])
    assert "ascl_calc_tool" in sys.modules
    from ascl_ray.rollout.method import build_context

    ctx = build_context(cfg.method, tokenizer=tiny_tokenizer)
    assert [t.name for t in ctx.protocol.tools] == ["retrieve_safety_rules", "calculator"]
    assert "calculator" in ctx.system_text and "retrieve_safety_rules" in ctx.system_text
    assert ctx.consult_tool == "retrieve_safety_rules"
    turn, info = ctx.tool_turn_text('<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}'
                                    '</tool_call>', 0)
    assert info["valid"] and info["tool"] == "calculator" and "42" in turn
    # the default (tools unset) is the method's own: ascl offers the rule tool only
    assert [t.name for t in build_context(compose([]).method).protocol.tools] == ["retrieve_safety_rules"]


def test_dict_override_adds_keys():
    """key={...} merges into a free-form dict, new keys included (Hydra's struct mode refused them)."""
    cfg = compose(["method.policy={gambling:refuse}", "algorithm=grpo", "algorithm.options={eps:0.001}"])
    assert cfg.method.policy == {"gambling": "refuse"}
    assert cfg.algorithm.options == {"norm_std": True, "eps": 0.001}
    with pytest.raises(ConfigError, match="method.policy"):
        compose(["method.policy={gambling:maybe}"])


def test_cli_plugins_lists_every_point(monkeypatch, capsys):
    from ascl_ray.cli import main

    monkeypatch.syspath_prepend(TOOLS_DIR)
    assert main(["plugins", "ascl_calc_tool"]) == 0
    lines = dict(ln.split(None, 1) for ln in capsys.readouterr().out.splitlines())
    assert lines["tool"].strip() == "retrieve_safety_rules, calculator"
    assert "ascl_calc" in lines["method"] and "ifpo" in lines["advantage_estimator"]
    assert {"judge", "reward_rule", "wire_format", "retriever", "sync_channel", "policy_loss"} <= set(lines)
    assert main(["plugins", "no_such_plugin_mod_xyz"]) == 2
