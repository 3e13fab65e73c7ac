"""The distributed conformance mode (`mpiexec -n N python -m conformance run --ranks N`).

The first part runs in the test process: the case model's new fields, the per-rank streams,
the reduction's error model (`tolerance.mean_over_ranks`, checked against every summation
order), the distributed slice's shape, applicability and the reproduce line. The second part
launches the slice on 2 and 3 ranks with the mpich wheel's mpiexec (every launch has a time
limit after which its process group is killed: a hang fails), a negative control that must
fail, and two of the four distributed mutants (all four: `python -m conformance mutants
--only mean-not-divided-by-n,zero-norm-over-local-shard,zero-skip-decided-locally,
zero-shard-edge-off-by-one --write`, reports/mutants-distributed.md).
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance import generators, streams, tolerance
from conformance.applicability import missing
from conformance.cases import OPTIMIZERS, Case, HookSpec, Injection, ParamSpec
from conformance.diagnosis import reproduce_command
from conformance.mutants.catalog import by_name
from conformance.mutants.runner import launch_ranks, run_distributed_mutant
from conformance.runner import case_from_repr

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT_S = 240


# -- the case model ------------------------------------------------------------------------------
def test_one_process_cases_read_as_before():
    """The new fields are left out of a one-process case's repr: the suite's reprs (and any
    --case-repr line printed before) are unchanged, and no one-process level holds a
    distributed case."""
    for level in ("smoke", "ci"):
        for case in generators.ci_suite(level):
            assert case.ranks == 1
            text = repr(case)
            assert "ranks=" not in text and "zero=" not in text and "exchange_dtype" not in text
            assert "rank=" not in text
    case = generators.ci_suite("ci")[0]
    assert case_from_repr(repr(case)) == case


def test_distributed_cases_round_trip_and_validate():
    case = next(c for c in generators.ci_suite("ci", ranks=3) if c.injections and c.zero)
    assert "ranks=3" in repr(case) and "zero=True" in repr(case) and "rank=" in repr(case)
    assert case_from_repr(repr(case)) == case
    spec = (ParamSpec("p0", (3,)),)
    with pytest.raises(ValueError, match="distributed cases"):
        Case("c", "SGD", spec, zero=True)
    with pytest.raises(ValueError, match="distributed cases"):
        Case("c", "SGD", spec, exchange_dtype="float32")
    with pytest.raises(ValueError, match="injection on rank 2"):
        Case("c", "SGD", spec, ranks=2, injections=(Injection(1, "p0", "nan", rank=2),))


def test_each_rank_has_its_own_stream_and_an_injection_lands_on_one_rank():
    case = Case("c", "SGD", (ParamSpec("p0", (6,)),), ranks=3,
                injections=(Injection(1, "p0", "nan", 2, rank=1),))
    spec = case.params[0]
    grads = [streams.gradient(case, 0, spec, 1, None, rank=r) for r in range(3)]
    assert np.isnan(grads[1][2]) and np.isnan(grads).sum() == 1
    assert not np.array_equal(grads[0], grads[2])
    again = streams.gradient(case, 0, spec, 1, None, rank=2)
    assert np.array_equal(again, grads[2])  # a pure function of (seed, position, step, rank)
    with pytest.raises(ValueError, match="needs a rank"):
        streams.gradient(case, 0, spec, 1, None)


# -- the reduction's error model -----------------------------------------------------------------
def every_order(terms, grad_dtype, exchange_dtype):
    """The mean as fast.distributed computes it, for every order of summing the ranks' terms
    (every evaluation tree for N <= 3; commutativity covers the rest)."""
    D = np.dtype(grad_dtype)
    E = D if exchange_dtype is None else np.dtype(exchange_dtype)
    a = [np.asarray(t).astype(E) for t in terms]
    n = len(a)
    results = []
    with np.errstate(over="ignore", invalid="ignore"):
        for order in itertools.permutations(range(n)):
            s = a[order[0]]
            for k in order[1:]:
                s = (s + a[k]).astype(E)
            results.append((s.astype(np.float64) * (1.0 / n)).astype(E).astype(D).astype(np.float64))
    return np.array(results)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("grad_dtype,exchange", [("float16", None), ("float16", "float32"),
                                                 ("float32", None), ("float64", None),
                                                 ("float64", "float32")])
def test_mean_over_ranks_bounds_every_summation_order(n, grad_dtype, exchange):
    rng = np.random.default_rng([n, len(grad_dtype), exchange is None])
    scales = 10.0 ** rng.integers(-3, 3, size=(n, 4000))
    terms = [(rng.standard_normal(4000) * scales[r]).astype(grad_dtype) for r in range(n)]
    mean = tolerance.mean_over_ranks(terms, grad_dtype, exchange)
    results = every_order(terms, grad_dtype, exchange)
    assert not mean.overflow_ambiguous.any() and not mean.class_ambiguous.any()
    assert np.all(np.abs(results - mean.value) <= mean.bound)
    # On the gradient dtype's grid, and not vacuous: within a few units in the last place of
    # the coarser of the two dtypes where nothing cancels (all terms of one sign).
    assert np.array_equal(mean.value.astype(grad_dtype).astype(np.float64), mean.value)
    same_sign = np.all(np.sign(np.array(terms, dtype=np.float64)) == np.sign(terms[0]), axis=0)
    coarse = np.dtype(grad_dtype) if exchange is None or np.dtype(grad_dtype).itemsize < 4 \
        else np.dtype(exchange)
    ulp = np.spacing(np.abs(mean.value).astype(coarse)).astype(np.float64)
    assert np.all(mean.bound[same_sign] <= 4 * ulp[same_sign])
    if n == 3 and exchange is None and grad_dtype != "float64":
        orders_differ = results.max(axis=0) != results.min(axis=0)
        assert orders_differ.any()  # the bound is needed: a zero bound would fail here


def test_mean_over_ranks_non_finite_classes():
    h = np.float16
    nan_one = tolerance.mean_over_ranks([np.array([1.0, np.nan], h), np.array([2.0, 3.0], h)], h)
    assert nan_one.value[0] == 1.5 and np.isnan(nan_one.value[1])
    mixed = tolerance.mean_over_ranks([np.array([np.inf, np.inf], h),
                                       np.array([1.0, -np.inf], h)], h)
    assert mixed.value[0] == np.inf and np.isnan(mixed.value[1])
    # Each rank's value is finite; their sum overflows float16 in every order, not float32.
    big = [np.array([60000.0], h), np.array([50000.0], h)]
    assert tolerance.mean_over_ranks(big, h).value[0] == np.inf
    assert tolerance.mean_over_ranks(big, h, "float32").value[0] == 54976.0  # (60000 + 49984) / 2, rounded to float16
    # Three ranks: (60000 + 10000) overflows, (60000 - 40000) + 10000 does not.
    three = [np.array([60000.0], h), np.array([10000.0], h), np.array([-40000.0], h)]
    ambiguous = tolerance.mean_over_ranks(three, h)
    assert ambiguous.overflow_ambiguous[0] and not ambiguous.certainly_nonfinite[0]
    assert set(np.isfinite(every_order(three, h, None)).ravel()) == {True, False}


def test_an_order_dependent_overflow_is_refused_unless_the_step_is_skipped_anyway():
    from conformance.cases import LossScaling
    from conformance.ranks import _resolve_ambiguity
    h = np.float16
    ambiguous = tolerance.mean_over_ranks(
        [np.array([60000.0], h), np.array([10000.0], h), np.array([-40000.0], h)], h)
    certain = tolerance.mean_over_ranks([np.array([np.nan], h)] * 3, h)
    plain = Case("c", "SGD", (ParamSpec("p0", (1,)),), ranks=3, dtype_mode="float16")
    with pytest.raises(tolerance.AmbiguousReduction, match="summation order"):
        _resolve_ambiguity(plain, 1, [ambiguous])
    dynamic = Case("c", "SGD", (ParamSpec("p0", (1,)),), ranks=3, dtype_mode="float16",
                   loss_scaling=LossScaling("dynamic", None, 2))
    with pytest.raises(tolerance.AmbiguousReduction):
        _resolve_ambiguity(dynamic, 1, [ambiguous])
    _resolve_ambiguity(dynamic, 1, [ambiguous, certain])  # skipped on every order: no error


def test_the_reference_receives_the_mean_as_a_tracked_input():
    from conformance.compare import ReferenceSide
    case = Case("c", "SGD", (ParamSpec("p0", (50,)),), ranks=3, dtype_mode="float16")
    ref = ReferenceSide(case)
    ref.driver.set_grads(1)
    grad = ref.driver.params["p0"].grad_value
    value, bound = ref.ctx.to_float64(grad), ref.ctx.bounds(grad)
    grads = [streams.gradient(case, 0, case.params[0], 1, None, rank=r) for r in range(3)]
    expected = tolerance.mean_over_ranks(grads, "float16")
    assert np.array_equal(value, expected.value) and np.array_equal(bound, expected.bound)
    assert bound.max() > 0


# -- the slice -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ranks", [2, 3])
def test_the_distributed_slice_covers_its_matrix(ranks):
    cases = generators.ci_suite("ci", ranks=ranks)
    assert all(c.ranks == ranks and c.name.startswith(f"ranks{ranks}/") for c in cases)
    assert len({c.name for c in cases}) == len(cases)
    matrix = {(c.optimizer, c.dtype_mode, c.zero, c.exchange_dtype)
              for c in cases if "/matrix/" in c.name}
    assert matrix == {(o, m, z, e) for o in OPTIMIZERS for m in generators.EXCHANGES
                      for z in (False, True) for e in generators.EXCHANGES[m]}
    for family in ("matrix", "norm", "checkpoint", "resume", "one-rank-nonfinite", "hooks"):
        chosen = [c for c in cases if f"/{family}/" in c.name]
        assert {c.profile for c in chosen} == {"chainer", "fixed"}, family
        assert {c.zero for c in chosen} == {False, True}, family
    # One rank's non-finite gradient only, in every float16 matrix case (dynamic scaling).
    for c in cases:
        if "/matrix/" in c.name and c.dtype_mode.startswith("float16"):
            assert [i.rank for i in c.injections] == [ranks - 1]
    # The norm cases' 300-element parameter straddles every shard edge (even blocks).
    norm = next(c for c in cases if "/norm/" in c.name)
    total = sum(p.size for p in norm.params)
    block = -(-total // ranks)
    offsets = np.cumsum([0] + [p.size for p in norm.params])
    for edge in range(block, total, block):
        k = np.searchsorted(offsets, edge, side="right") - 1
        assert offsets[k] < edge < offsets[k + 1], edge


def test_reproduce_line_of_a_distributed_case_runs_under_mpiexec():
    case = generators.ci_suite("ci", ranks=3)[5]
    args = argparse.Namespace(impl="fast", device="cpu", level="ci")
    line = reproduce_command(args, case)
    assert line.startswith("mpiexec -n 3 python -m conformance gate ")
    assert f"--ranks 3 --level ci --case {case.name}" in line.replace("'", "")
    by_repr = reproduce_command(args, case, by_repr=True)
    assert by_repr.startswith("mpiexec -n 3 ") and "--ranks 3 --case-repr" in by_repr


def test_applicability_of_distributed_cases():
    import types

    import fast
    for ranks in (2, 3):
        assert all(not missing(fast, c) for c in generators.ci_suite("ci", ranks=ranks))
    rule_hook = Case("c", "SGD", (ParamSpec("p0", (3,)),), ranks=2, zero=True,
                     hooks=(HookSpec("Lasso", (1e-3,), param="p0"),))
    assert missing(fast, rule_hook) == ["zero=True refuses hooks attached to a single rule"]
    assert not missing(fast, Case("c", "SGD", rule_hook.params, ranks=2, hooks=rule_hook.hooks))
    one_process = types.SimpleNamespace(__name__="no_such_impl", optimizers=fast.optimizers)
    plain = Case("c", "SGD", rule_hook.params, ranks=2)
    assert missing(one_process, plain) == [
        "the implementation has no distributed.create_multi_node_optimizer and "
        "create_communicator (distributed cases)"]


def test_ranks_without_mpiexec_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "conformance", "gate", "--ranks", "2",
                           "--filter", "matrix/SGD/float32"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2, proc.stderr
    assert "mpiexec -n 2" in proc.stderr


# -- under mpiexec -------------------------------------------------------------------------------
def launch(ranks, *args, env_extra=None):
    status, out = launch_ranks(ranks, list(args), env_extra=env_extra, timeout=LAUNCH_TIMEOUT_S)
    if status is None:
        pytest.fail(f"{ranks} ranks did not finish within {LAUNCH_TIMEOUT_S} s (a hang):\n{out[-4000:]}")
    return status, out


@pytest.fixture(scope="module")
def in_root():
    cwd = os.getcwd()
    os.chdir(ROOT)  # launch_ranks puts the current directory first on the ranks' import path
    yield
    os.chdir(cwd)


@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def slice_run(request, in_root, tmp_path_factory):
    ranks = request.param
    path = tmp_path_factory.mktemp(f"slice{ranks}") / "run.json"
    status, out = launch(ranks, "gate", "--impl", "fast", "--ranks", str(ranks), "--level", "ci",
                         "--json", str(path))
    return ranks, status, out, json.loads(path.read_text())


def test_the_distributed_slice_passes(slice_run):
    ranks, status, out, payload = slice_run
    assert status == 0, out[-4000:]
    names = [c.name for c in generators.ci_suite("ci", ranks=ranks)]
    assert [r["case"] for r in payload["results"]] == names
    assert payload["verdict"] == "pass" and payload["failed"] == 0
    assert payload["not_applicable"] == 0 and payload["meta"]["ranks"] == ranks
    assert all(r["status"] == "passed" and r["elements"] > 0 for r in payload["results"])
    assert out.count(f"{len(names)} cases, 0 failed") == 1  # rank 0 prints, the others do not


def test_a_sum_instead_of_the_mean_fails_on_every_case(in_root, tmp_path):
    path = tmp_path / "run.json"
    status, out = launch(2, "gate", "--impl", "tests.conformance.sum_not_mean", "--ranks", "2",
                         "--level", "ci", "--filter", "matrix/Adam/", "--json", str(path))
    assert status == 1, out[-4000:]
    payload = json.loads(path.read_text())
    assert payload["failed"] == payload["cases"] == 14
    for failure in payload["failures"]:
        assert failure["reproduce"].startswith("mpiexec -n 2 python -m conformance gate ")
        assert "--ranks 2" in failure["reproduce"]


@pytest.mark.parametrize("name", ["mean-not-divided-by-n", "zero-shard-edge-off-by-one"])
def test_distributed_mutant_is_caught_where_fast_passes(name, slice_run):
    ranks, status, out, payload = slice_run
    mutant = by_name(name)
    if ranks != mutant.ranks:
        pytest.skip(f"{name} runs on {mutant.ranks} ranks")
    passing = {r["case"] for r in payload["results"] if r["status"] == "passed"}
    outcome = run_distributed_mutant(mutant, "ci", passing)
    assert outcome["error"] is None, outcome["error"]
    assert outcome["detected"], outcome
