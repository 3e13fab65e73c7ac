"""The CI suite: the implementation under test ($CONFORMANCE_IMPL, default `fast`) against the
reference over the whole `ci` level (every dtype mode, hook, loss-scaling mode and profile,
plus the feature cases), one test per optimizer, run in worker processes (one per usable
core). Every case must run (a case that is not applicable fails, as `--require-all`). A
failure names the first failing case and the command that reproduces it."""
import os

import pytest

from conformance import generators
from conformance.diagnosis import headline, reproduce_command
from conformance.cases import OPTIMIZERS
from conformance.parallel import run_suite, usable_cores
from conformance.target import Target

IMPL = os.environ.get("CONFORMANCE_IMPL", "fast")
TARGET = Target(IMPL)

#: Open findings: case families where `fast` and the reference still disagree and the cause
#: is not yet settled (reports/fast-findings.md says what is known). They are reported, not
#: hidden: each family must still diverge somewhere (test_open_findings_still_diverge), so
#: the list can only shrink; every case outside them must conform.
OPEN_FINDINGS = {}  # name -> re.Pattern over case names


def open_finding(case_name):
    return next((key for key, pattern in OPEN_FINDINGS.items() if pattern.search(case_name)), None)


@pytest.fixture(scope="module")
def results():
    return run_suite(TARGET, generators.ci_suite("ci"), jobs=usable_cores())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_conforms(optimizer, results):
    mine = [r for r in results if r.case.optimizer == optimizer]
    assert mine, f"the ci level has no {optimizer} case"
    failed = [r for r in mine if r.failed(require_all=True) and open_finding(r.case.name) is None]
    if failed:
        first = failed[0]
        pytest.fail(f"{len(failed)}/{len(mine)} {optimizer} cases fail; first: "
                    f"{first.case.name}: {headline(first)}\n  reproduce: "
                    f"{reproduce_command(TARGET, 'ci', first.case)}", pytrace=False)


def test_open_findings_still_diverge(results):
    diverging = {open_finding(r.case.name) for r in results if r.diverged}
    stale = sorted(set(OPEN_FINDINGS) - diverging)
    assert not stale, f"open findings that no longer diverge (remove them): {stale}"


def test_reference_conforms_to_itself():
    """No false alarm on the reference's own float64 trajectory (smoke level)."""
    results = run_suite(Target("reference"), generators.ci_suite("smoke"), jobs=usable_cores())
    assert all(r.passed for r in results), [headline(r) for r in results if not r.passed][:3]
