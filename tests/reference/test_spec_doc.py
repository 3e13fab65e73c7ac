"""docs/spec.md is what the reference generates, and each update rule's documented stores are
the stores its code makes (so the document cannot drift from the code)."""
import os

import pytest

import reference
from reference import spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_committed_spec_is_the_generated_one():
    with open(os.path.join(ROOT, spec.PATH)) as f:
        committed = f.read()
    assert committed == spec.render(), "docs/spec.md is stale: python -m reference.spec --write"


def test_the_spec_covers_every_optimizer_hook_and_the_loss_scaling():
    text = spec.render()
    assert sorted(spec.OPTIMIZERS) == sorted(n for n in reference.optimizers.__all__
                                             if not n.endswith("Rule"))
    assert sorted(spec.HOOKS) == sorted(n for n in reference.optimizer_hooks.__all__
                                        if n[0].isupper())
    for name in spec.OPTIMIZERS + spec.HOOKS:
        assert f"\n### {name}\n" in text
    for words in ("## Loss scaling", "m = 2**(1/interval)", "**The store rule.**",
                  "## The order of one update", "value-based casting"):
        assert words in text
    assert "0x" not in text, "a default rendered by its address"


@pytest.mark.parametrize("name", spec.OPTIMIZERS)
def test_each_rules_documented_stores_are_the_stores_its_code_makes(name):
    rule = spec.rule_class(name)
    documented = spec.documented_stores(rule)
    assert documented and documented == spec.store_targets(rule), rule.__name__


def test_the_store_reader_sees_a_store_the_docstring_lacks():
    class OneMoreStore(spec.rule_class("MomentumSGD")):
        def update_core(self, param):
            super().update_core(param)
            self.store_state("v", self.state_values["v"] * 1)
    assert spec.store_targets(OneMoreStore) == ["v"]
    assert spec.documented_stores(OneMoreStore) == ["v", "v", "p"]
