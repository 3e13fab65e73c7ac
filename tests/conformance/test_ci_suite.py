"""The CI suite: the implementation under test ($CONFORMANCE_IMPL, default `fast`) against the
reference, one test per optimizer over the whole `ci` level (every dtype mode, hook,
loss-scaling mode and profile, plus the feature cases). A failure names the first diverging
case and the command that reproduces it."""
import os
import warnings

import pytest

from conformance import generators
from conformance.adapter import load_impl
from conformance.cases import OPTIMIZERS
from conformance.runner import run_cases

IMPL = os.environ.get("CONFORMANCE_IMPL", "fast")


@pytest.fixture(scope="module")
def suite():
    cases = generators.ci_suite("ci")
    return {name: [c for c in cases if c.optimizer == name] for name in OPTIMIZERS}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_conforms(optimizer, suite):
    impl = load_impl(IMPL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_cases(impl, suite[optimizer])
    failed = [r for r in results if not r.passed]
    if failed:
        first = failed[0]
        pytest.fail(f"{len(failed)}/{len(results)} {optimizer} cases diverge; first: "
                    f"{first.case.name}: {first.divergences[0].describe()}\n  reproduce: "
                    f"python -m conformance gate --impl {IMPL} --case {first.case.name}",
                    pytrace=False)


def test_reference_conforms_to_itself():
    """No false alarm on the reference's own float64 trajectory (smoke level)."""
    impl = load_impl("reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_cases(impl, generators.ci_suite("smoke"))
    assert all(r.passed for r in results), [r.divergences[0].describe() for r in results
                                           if not r.passed][:3]
