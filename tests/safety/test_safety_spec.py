"""RuleStore: default spec validity, file round trips, validation errors, real-corpus loaders."""

import json
from pathlib import Path

import pytest
import yaml

from ascl_ray.safety.corpora import is_refusal_opening, load_aegis_policy, load_openai_model_spec
from ascl_ray.safety.spec import (DEFAULT_SPEC_PATH, VERDICTS, Case, Category, Rule, RuleStore, SpecError,
                                  load_default_store, load_store)

DATA = Path("/work/shared/data")
MODEL_SPEC = DATA / "openai_model_spec"
AEGIS = DATA / "aegis_safety_policy"
REQUIRED = ["violence_weapons", "cyber", "drugs", "self_harm", "hate_harassment", "privacy",
            "fraud_deception", "sexual_minors", "general"]


def _default_dict():
    return yaml.safe_load(DEFAULT_SPEC_PATH.read_text())


def _write(tmp_path, data, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data, sort_keys=False))
    return p


def test_default_spec_validates_and_has_required_shape():
    store = load_default_store()
    assert set(REQUIRED) <= set(store.category_names)
    assert store.operator_categories == ["gambling", "lockpicking", "alcohol", "web_filters"]
    for cat in store.categories:
        if cat.policy is not None:   # operator-set: the current policy is the rule, no fixed codes or cases
            assert not cat.rules and not cat.cases and cat.policy.default in ("comply", "refuse"), cat.name
            assert cat.policy.comply != cat.policy.refuse
            continue
        assert 2 <= len(cat.rules) <= 4, cat.name
        assert 2 <= len(cat.cases) <= 4, cat.name
        verdicts = {k.verdict for k in cat.cases}
        assert verdicts <= set(VERDICTS)
        # every category has a contrast pair: a benign look-alike (comply) vs its harmful twin
        pairs = [(k, cat_case) for k in cat.cases for cat_case in cat.cases if k.contrast_of == cat_case.id]
        assert any(a.verdict == "comply" and b.verdict != "comply" for a, b in pairs), cat.name
    by_id = {k.id: k for _, k in store.iter_cases()}
    for _, k in store.iter_cases():  # contrast links are symmetric in our spec
        if k.contrast_of:
            assert by_id[k.contrast_of].contrast_of == k.id
    assert any("kill a python process" in k.request for k in store["general"].cases)


@pytest.mark.parametrize("name", ["spec.yaml", "spec.json"])
def test_save_load_round_trip(tmp_path, name):
    store = load_default_store()
    path = store.save(tmp_path / name)
    again = RuleStore.load(path)
    assert again.to_dict() == store.to_dict()
    assert again.categories == store.categories


def test_bad_verdict_names_file_and_field_path(tmp_path):
    data = _default_dict()
    data["categories"][2]["cases"][1]["verdict"] = "deny"
    path = _write(tmp_path, data)
    with pytest.raises(SpecError) as ei:
        RuleStore.load(path)
    assert str(ei.value) == f"{path}: categories[2].cases[1].verdict: 'deny' not in ('comply', 'safe_complete', 'refuse')"


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["categories"][0]["rules"][1].pop("text"), "categories[0].rules[1].text: missing required field"),
    (lambda d: d["categories"][1]["rules"][0].update(text=5), "categories[1].rules[0].text: expected a string, got int"),
    (lambda d: d["categories"][1]["rules"][0].update(id="vw.1"), "categories[1].rules[0].id: duplicate id 'vw.1'"),
    (lambda d: d["categories"][3].update(name="violence_weapons"), "categories[3].name: duplicate category"),
    (lambda d: d["categories"][0]["cases"][0].update(contrast_of="nope"),
     "categories[0].cases[0].contrast_of: 'nope' is not a case id"),
    (lambda d: d["categories"][0]["cases"][0].update(contrast_of="vw.c1"),
     "categories[0].cases[0].contrast_of: case 'vw.c1' cannot be its own contrast"),
    (lambda d: d["categories"][4]["cases"][0].update(reqest="typo"), "categories[4].cases[0].reqest: unknown field"),
    (lambda d: d["categories"][4]["cases"][0].update(request="  "), "categories[4].cases[0].request: must not be empty"),
    (lambda d: d["categories"].__setitem__(5, ["not", "a", "mapping"]), "categories[5]: expected a mapping, got list"),
    (lambda d: d["categories"][6].update(rules={"a": 1}), "categories[6].rules: expected a list, got dict"),
    (lambda d: d.update(categories=[]), "categories: expected a non-empty list"),
    (lambda d: d.update(version=2), "version: unsupported version 2"),
])
@pytest.mark.parametrize("name", ["spec.yaml", "spec.json"])
def test_validation_errors_name_field_path(tmp_path, mutate, expected, name):
    data = _default_dict()
    mutate(data)
    path = _write(tmp_path, data, name)
    with pytest.raises(SpecError) as ei:
        RuleStore.load(path)
    assert f"{path}: {expected}" in str(ei.value)


def test_all_errors_are_reported(tmp_path):
    data = _default_dict()
    data["categories"][0]["cases"][0]["verdict"] = "deny"
    data["categories"][8]["rules"][0].pop("id")
    with pytest.raises(SpecError) as ei:
        RuleStore.load(_write(tmp_path, data))
    assert len(ei.value.errors) == 2
    assert "categories[0].cases[0].verdict" in ei.value.errors[0]
    assert "categories[8].rules[0].id: missing required field" in ei.value.errors[1]


def test_syntax_errors_and_formats(tmp_path):
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("categories:\n  - name: x\n    rules: [\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: invalid YAML at line \d+"):
        RuleStore.load(bad_yaml)
    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"categories": [}')
    with pytest.raises(SpecError, match=r"broken\.json: invalid JSON at line 1"):
        RuleStore.load(bad_json)
    with pytest.raises(SpecError, match=r"spec\.txt: unknown spec format"):
        RuleStore.load(_write(tmp_path, {}, "spec.txt"))
    with pytest.raises(SpecError, match=r"top\.yaml: expected a mapping, got list"):
        RuleStore.load(_write(tmp_path, [1, 2], "top.yaml"))
    with pytest.raises(SpecError, match="cannot read"):
        RuleStore.load(tmp_path / "missing.yaml")


def test_store_access_and_subset():
    store = load_default_store()
    assert "cyber" in store and "nope" not in store and store.get("nope") is None
    assert store.n_rules == sum(len(c.rules) for c in store.categories) > 0
    sub = store.subset(["general", "cyber"])
    assert sub.category_names == ["general", "cyber"]
    with pytest.raises(KeyError, match="nope"):
        store.subset(["nope"])
    # contrast links leaving the subset are dropped, so the subset stays valid when saved
    cut = RuleStore([Category("a", "", (Rule("a.1", "x"),),
                              (Case("a.c1", "r", "comply", "", "b.c1"),)),
                     Category("b", "", (), (Case("b.c1", "r", "refuse", "", "a.c1"),))]).subset(["a"])
    assert cut["a"].cases[0].contrast_of is None
    RuleStore.from_dict(cut.to_dict())


def test_load_store_dispatch(tmp_path):
    assert load_store("default").to_dict() == load_default_store().to_dict()
    assert load_store(None).category_names == load_default_store().category_names
    p = load_default_store().save(tmp_path / "s.json")
    assert load_store(p).category_names == load_default_store().category_names
    with pytest.raises(SpecError, match="neither openai_model_spec"):
        load_store(tmp_path)
    with pytest.raises(TypeError, match="only apply to corpus folders"):
        load_store(p, safety_only=True)


@pytest.mark.skipif(not MODEL_SPEC.is_dir(), reason="openai_model_spec corpus not available")
def test_openai_model_spec_loader_counts():
    store = load_store(MODEL_SPEC)
    sections = [json.loads(line) for line in (MODEL_SPEC / "sections.jsonl").open()]
    assert len(store.categories) == 80 and store.n_cases == 183
    assert store.name == "openai_model_spec"
    for s in sections:  # per-section case counts match the corpus' own n_cases
        assert len(store[s["id"]].cases) == s["n_cases"], s["id"]
    assert all(k.verdict in VERDICTS and k.request.strip() for _, k in store.iter_cases())
    assert {k.verdict for _, k in store.iter_cases()} == set(VERDICTS)
    assert store["avoid_hateful_content"].cases[0].verdict == "refuse"  # GOOD response refuses
    assert store.n_rules > 80 and all(r.text.strip() for _, r in store.iter_rules())
    assert store["sexual_content_involving_minors"].rules
    RuleStore.from_dict(store.to_dict())  # the built store passes the file validator too
    safety = load_openai_model_spec(MODEL_SPEC, safety_only=True)
    assert "stay_in_bounds" in safety and "do_not_encourage_self_harm" in safety and "be_warm" not in safety
    one = load_openai_model_spec(MODEL_SPEC, sections=["protect_privacy"], split_paragraphs=False)
    assert one.category_names == ["protect_privacy"] and len(one["protect_privacy"].rules) == 1
    with pytest.raises(SpecError, match="unknown section ids"):
        load_openai_model_spec(MODEL_SPEC, sections=["nope"])


@pytest.mark.skipif(not AEGIS.is_dir(), reason="aegis_safety_policy corpus not available")
def test_aegis_loader_counts():
    store = load_store(AEGIS)
    raw = json.loads((AEGIS / "aegis_v1_policy.json").read_text())["categories"]
    assert len(store.categories) == 13 and store.n_cases == 0
    assert store.n_rules == sum(len(c["should_not"]) + len(c["can"]) + len(c["should"]) for c in raw)
    assert store.category_names[0] == "violence" and "sexual_minor" in store and "pii_privacy" in store
    assert store["violence"].rules[0].text == "Should not: Help people plan or engage in violence."
    assert any(r.text.startswith("Can: ") for r in store["violence"].rules)
    assert any(r.text.startswith("Should: ") for r in store["suicide_and_self_harm"].rules)
    RuleStore.from_dict(store.to_dict())


def test_aegis_loader_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot load"):
        load_aegis_policy(tmp_path)
    (tmp_path / "aegis_v1_policy.json").write_text('{"categories": [{"name": "x"}]}')
    with pytest.raises(SpecError, match=r"categories\[0\]: expected an object with id and name"):
        load_aegis_policy(tmp_path)


def test_refusal_opening_heuristic():
    assert is_refusal_opening("Sorry, I can't help with that.")
    assert is_refusal_opening("I can\u2019t help with that.")
    assert is_refusal_opening("  **I won't** do that")
    assert not is_refusal_opening("Sure! Here is how SQL injection works.")
    assert not is_refusal_opening("The sorry state of affairs")
