"""The gate driven through Chainer's objects (`--params chainer`, conformance.params).

Parameters are chainer.Parameters of a chainer.Link (every other one created without an
array and given it after setup), gradients arrive through `backward(loss_scale=...)`. The
smoke level passes on `fast` in that mode here; the ci level passes too (`python -m
conformance run --params chainer`, reports/conformance-params-chainer.md), too long for
`make test`. The three mutants of the layer between fast and Chainer's objects are each
caught in that mode and missed in the `impl` mode on the same case: the mode is what sees
them.
"""
import warnings
from pathlib import Path

import pytest

pytest.importorskip("chainer")

from conformance import generators  # noqa: E402
from conformance.compare import check_case  # noqa: E402
from conformance.mutants.catalog import by_name  # noqa: E402
from conformance.mutants.runner import run_distributed_mutant, run_mutant  # noqa: E402
from conformance.parallel import run_suite  # noqa: E402
from conformance.target import Target  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

#: integration mutant -> a ci case on which the chainer mode sees it
ONE_PROCESS = {
    "backward-loss-scale-ignored": "matrix/SGD/float32/nohook/static/chainer",
    "lazy-parameter-never-updated": "checkpoint/Adam/float32/chainer",
}


@pytest.fixture(scope="module")
def ci_cases():
    return {c.name: c for c in generators.ci_suite("ci")}


def test_the_smoke_level_passes_through_chainer_links():
    results = run_suite(Target("fast", params="chainer"), generators.ci_suite("smoke"), jobs=1)
    failed = [r for r in results if not r.passed]
    assert not failed, failed[0].divergences[0].describe()
    assert len(results) == len(generators.ci_suite("smoke"))


def test_static_loss_scaling_reaches_the_optimizer_only_through_backward(ci_cases):
    """In chainer mode the optimizer's own loss scaling stays off for a static case: only the
    scale backward recorded on each parameter can divide the gradients."""
    import fast
    from conformance.adapter import Driver
    case = ci_cases[ONE_PROCESS["backward-loss-scale-ignored"]]
    driver = Driver(fast, case, params="chainer")
    scale = case.loss_scaling.scale
    assert driver.optimizer.loss_scale is None and driver.loss_scale() == scale
    driver.set_grads(1)
    assert all(p._loss_scale == scale for p in driver.params.values())


def test_some_parameters_get_their_arrays_after_setup(ci_cases):
    import fast
    from conformance.adapter import Driver
    case = ci_cases[ONE_PROCESS["lazy-parameter-never-updated"]]
    assert len(case.params) >= 2
    driver = Driver(fast, case, params="chainer")
    assert [e.group is None for e in driver.optimizer.engine.members] == [
        False, True] + [False, True] * ((len(case.params) - 2) // 2) + [False] * (len(case.params) % 2)


@pytest.mark.parametrize("name", sorted(ONE_PROCESS))
def test_an_integration_mutant_is_caught_through_chainer_links_only(name, ci_cases):
    import fast
    case = ci_cases[ONE_PROCESS[name]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for params in ("impl", "chainer"):
            baseline = check_case(fast, case, params=params)
            assert baseline.passed, f"correct fast fails {case.name} ({params}): {baseline.divergences[0].describe()}"
    through_chainer = run_mutant(name, [case], timeout=300, params="chainer")
    assert through_chainer.get("error") is None, through_chainer["error"]
    assert through_chainer["detected"], f"{name} survived {case.name} through Chainer's objects"
    directly = run_mutant(name, [case], timeout=300, params="impl")
    assert directly.get("error") is None and not directly["detected"]


def test_the_mean_written_where_chainer_does_not_read_it_is_caught_on_3_ranks():
    """Replicated training handing each rank the mean through a private attribute: every
    rank would step on its own gradient; the distributed slice in chainer mode sees it."""
    mutant = by_name("mean-gradient-written-where-chainer-does-not-read")
    assert mutant.params == "chainer" and mutant.ranks == 3
    case = "ranks3/matrix/SGD/float64/replicated/E=D/chainer"
    outcome = run_distributed_mutant(mutant, "ci", {case}, name_filter=case)
    assert outcome["error"] is None, outcome["error"]
    assert outcome["detected"] and outcome["case"] == case


def test_zero_honours_the_scale_backward_recorded_on_3_ranks():
    """ZeRO steps pieces of the parameters: each piece's gradient carries the loss scale
    backward recorded on its parent chainer.Parameter (a piece that carried the optimizer's,
    here None, stepped 8x too far in every static case)."""
    from conformance.mutants.runner import distributed_slice_results
    status, payload, out = distributed_slice_results(3, "ci", "fast", name_filter="/zero/",
                                                     params="chainer")
    assert status == 0 and payload is not None, out[-3000:]
    static = {c.name for c in generators.ci_suite("ci", ranks=3) if c.zero and c.loss_scaling.mode == "static"}
    ran = {r["case"] for r in payload["results"]}
    assert static and static <= ran and all(r["status"] == "passed" for r in payload["results"])
