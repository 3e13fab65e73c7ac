"""Mutant detection: planted bugs in `fast` must be caught, on cases the correct fast passes.

A subset runs here (the Python-level mutants, which need no compilation, and three kernel
edits); `python -m conformance mutants` runs the whole catalog against the whole suite.
"""
import os
import warnings

import pytest

from conformance import generators
from conformance.compare import check_case
from conformance.mutants import CATALOG
from conformance.mutants.runner import run_mutant

#: mutant -> a suite case on which it is visible.
TARGETS = {
    "adam-bias-correction-off-by-one": "matrix/Adam/float32/nohook/none/chainer",
    "adam-host-betas-swapped": "matrix/AdamW/float32/nohook/none/chainer",
    "adam-eps-cast-to-fp16": "grads/Adam/float16/zerosx1",
    "msvag-step-count-off-by-one": "matrix/MSVAG/float32/nohook/none/chainer",
    "eps-check-missing": "error/Adam-tiny-eps/float32",
    "rejected-update-changes-nothing": "error/RMSprop-none-grads/float16/chainer",
    "rejected-rule-untouched": "error/AMSGrad-disabled-first/float16_master/fixed",
    "rules-before-rejected-not-updated": "error/Adam-after-updates-hooks/float16/chainer",
    "rules-after-rejected-updated": "error/RMSprop-after-skip/float32/fixed",
    "per-rule-overrides-ignored": "none-grad-disabled-override/SGD/float32",
    "loss-scale-floor-missing": "long/SGD/float32/chainer",
    "loss-scale-forgets-overflow": "long/SGD/float32/chainer",
    "loss-scale-growth-stops-after-two-intervals": "long/SGD/float32/chainer",
    "master-not-written-on-step-4": "long/SGD/float16_master/fixed",
    "adam-bias-correction-dropped-after-1000": "resume/Adam/float32/chainer/t=1000",
    "loss-scale-grows-on-skip": "matrix/SGD/float32/nohook/dynamic/chainer",
    "rule-t-advanced-on-skip": "matrix/SGD/float32/nohook/dynamic/chainer",
    "opt-t-not-advanced-on-skip": "matrix/SGD/float32/nohook/dynamic/chainer",
    "disabled-rules-updated": "none-grad-disabled-override/Adam/float32",
    "none-grad-skips-update": "none-grad-disabled-override/MomentumSGD/float32",
    "hooks-in-reverse-order": "hook-order/SGD/float32/decay-then-clip",
    "weight-decay-rate-not-scaled": "matrix/SGD/float32/WeightDecay/static/chainer",
    "noise-func-gets-optimizer": "matrix/SGD/float32/GradientNoise/dynamic/chainer",
    "clipping-always-rescales": "clip-small-norm/SGD/float32/chainer",
    "clipping-zero-norm-nan-fixed": "clip-zero-norm/SGD/float32/fixed",
    "state-through-fp16-on-load": "checkpoint/Adam/float32/chainer",
    "loss-scale-reset-on-load-fixed": "checkpoint/SGD/float16/fixed",
    "t-not-restored-on-load": "checkpoint/SGD/float32/chainer",
    "rule-t-not-restored-on-load": "checkpoint/Adam/float32/chainer",
    "adam-swapped-betas": "matrix/Adam/float32/nohook/none/chainer",
    "vector-tail-dropped": "odd-sizes/SGD/float32",
    "fp16-state-not-rounded": "matrix/RMSprop/float16/nohook/none/chainer",
    "master-not-copied-back": "matrix/SGD/float16_master/nohook/none/chainer",
}


@pytest.fixture(scope="module")
def cases():
    return {c.name: c for c in generators.ci_suite("ci")}


def test_catalog_is_large_and_documented():
    assert len(CATALOG) >= 40
    assert len({m.name for m in CATALOG}) == len(CATALOG)
    assert all(m.models and m.visible and m.plant for m in CATALOG)


def test_every_kernel_edit_still_matches_the_kernel_sources_once():
    """A kernel mutant whose snippet no longer occurs (after a kernel change) plants nothing:
    catch that here, for the whole catalog, without compiling anything."""
    import fast.backends.cpu as cpu
    from conformance.mutants.planting import KernelEdit
    stale = []
    for mutant in CATALOG:
        for edit in mutant.plant:
            if isinstance(edit, KernelEdit):
                with open(os.path.join(cpu.KERNEL_DIR, edit.file)) as f:
                    count = f.read().count(edit.old)
                if count != 1:
                    stale.append(f"{mutant.name}: {edit.file} has the snippet {count} times")
    assert not stale, stale


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutant_is_detected_where_fast_passes(name, cases):
    import fast
    case = cases[TARGETS[name]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        baseline = check_case(fast, case)
    assert baseline.passed, f"correct fast fails {case.name}: {baseline.divergences[0].describe()}"
    outcome = run_mutant(name, [case], timeout=300)
    assert outcome.get("error") is None, outcome["error"]
    assert outcome["detected"], f"{name} survived {case.name}"


def test_a_planted_kernel_copy_follows_the_kernel_sources(tmp_path, monkeypatch):
    """The private copy a kernel mutant compiles is named by every source it copies, so a
    copy planted from older sources (an earlier checkout, left in the temp directory) is
    never reused: it would compile the old kernels, or fail on a file they lack and count
    as detected."""
    import fast.backends.cpu as cpu
    from conformance.mutants.planting import KernelEdit
    edit = KernelEdit("rule.h", "x + y", "x - y")
    targets = []
    for version in ("old", "new"):
        source = tmp_path / version
        source.mkdir()
        (source / "rule.h").write_text("return x + y;\n")
        (source / "extra.h").write_text(f"// {version}\n")
        monkeypatch.setattr(cpu, "KERNEL_DIR", str(source))
        edit.plant()
        targets.append(cpu.KERNEL_DIR)
        assert sorted(os.listdir(cpu.KERNEL_DIR)) == ["extra.h", "rule.h"]
        assert open(os.path.join(cpu.KERNEL_DIR, "extra.h")).read() == f"// {version}\n"
        assert open(os.path.join(cpu.KERNEL_DIR, "rule.h")).read() == "return x - y;\n"
    assert targets[0] != targets[1]


def test_each_device_runs_the_mutants_whose_planted_code_it_compiles():
    from conformance.mutants.runner import select_mutants
    by_device = {d: {m.name for m in select_mutants(device=d)} for d in ("cpu", "gpu", "gpu-emulated")}
    assert by_device["gpu"] == by_device["gpu-emulated"]
    assert "vector-tail-dropped" in by_device["cpu"] - by_device["gpu"]  # the CPU driver
    assert "cuda-master-not-written" in by_device["gpu"] - by_device["cpu"]  # the CUDA driver
    assert "adam-swapped-betas" in by_device["cpu"] & by_device["gpu"]  # the shared update math
    assert "t-not-restored-on-load" in by_device["cpu"] & by_device["gpu"]  # host code
    from conformance.mutants.runner import chainer_available
    runnable_here = {m.name for m in CATALOG if m.params == "impl" or chainer_available()}
    assert set().union(*by_device.values()) == runnable_here
    kernel_only = {m.name for m in select_mutants(device="gpu", kind="kernel")}
    assert kernel_only and all(m.kind == "kernel" for m in CATALOG if m.name in kernel_only)
    with pytest.raises(ValueError, match="does not run on gpu: vector-tail-dropped"):
        select_mutants("adam-swapped-betas,vector-tail-dropped", device="gpu")


def test_the_baseline_can_come_from_a_conformance_report(tmp_path):
    import json
    from conformance.mutants.runner import baseline_from_report, suite
    names = [c.name for c in suite("smoke", "float32/")]
    results = [{"case": n, "status": "failed" if i == 1 else "passed"} for i, n in enumerate(names)]
    path = tmp_path / "conformance-gpu.json"
    meta = {"impl": "fast", "device": "gpu", "level": "smoke"}
    path.write_text(json.dumps({"meta": meta, "results": results}))
    passing, excluded = baseline_from_report(str(path), "smoke", "gpu", "float32/")
    assert [c.name for c in passing] == names[:1] + names[2:] and excluded == 1
    with pytest.raises(ValueError, match="not of fast on cpu at level smoke"):
        baseline_from_report(str(path), "smoke", "cpu", "float32/")
    path.write_text(json.dumps({"meta": meta, "results": results[1:]}))
    with pytest.raises(ValueError, match="no result for 1 of the cases"):
        baseline_from_report(str(path), "smoke", "gpu", "float32/")
    older = [{"case": n, "passed": True} for n in names]
    path.write_text(json.dumps({"meta": meta, "results": older}))
    with pytest.raises(ValueError, match="records without a status"):
        baseline_from_report(str(path), "smoke", "gpu", "float32/")
