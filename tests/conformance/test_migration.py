"""The Chainer -> torch.optim / optax mappings: each port conforms or diverges as its class
says, a planted wrong mapping fails, and a translated state is judged with its rounding bound.

torch (2.13.0 CPU, `make test` installs it when it can) and optax/jax are optional: each
library's tests skip without it. A subset of each mapping's class cases runs here (the
no-hook matrix, the variants, the None-gradient case, the checkpoint; a hook's matrix over SGD
and MomentumSGD); `python -m conformance migrate` runs them all.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conformance import migrate
from conformance.adapters import mappings as table
from conformance.runner import run_case

#: Each port's class on the subset: the port to use conforms, a naive port does not. The
#: reports (reports/migration-<library>.md) run every class case; there every optax port also
#: differs on the subnormal gradient stream (test_optax_flushes_subnormals).
EXPECTED = {
    "torch": {m.name: ("exact" if m.kind == "mapping" else "differs")
              for m in table.mappings("torch")},
    "optax": {m.name: ("exact" if m.kind == "mapping" else "differs")
              for m in table.mappings("optax")},
}


def _library(name):
    if name == "torch":
        pytest.importorskip("torch", reason="torch is not installed (make test installs 2.13.0)")
    else:
        pytest.importorskip("optax", reason="optax is not installed (pip install jax optax)")
        pytest.importorskip("jax", reason="jax is not installed (pip install jax optax)")
    return migrate.adapter_module(name)


def _results(impl, cases):
    results = [run_case(impl, case, np) for case in cases]
    return [r for r in results if r.not_applicable is None]


def subset_cases(mapping):
    """The no-hook matrix (loss scaling off), the variants, the None-gradient case and the
    checkpoint of an optimizer; a hook's matrix over SGD and MomentumSGD with loss scaling
    off."""
    return [c for c in migrate.class_cases(mapping)
            if (c.name.startswith("matrix/") and "/none/" in c.name)
            or c.name.startswith(("variant/", "none-grad-disabled-override/", "checkpoint/"))]


@pytest.mark.parametrize("library,name", [(lib, n) for lib in table.LIBRARIES
                                          for n in EXPECTED[lib]])
def test_each_port_has_its_class(library, name):
    _library(library)
    mapping = table.find(library, name)
    impl = migrate.contract(library, mapping, migrate.LIBRARY_PATHS[library][0])
    results = _results(impl, subset_cases(mapping))
    assert results, f"{name}: no case of the subset ran"
    failed = [r.case.name for r in results if r.divergences]
    if EXPECTED[library][name] == "exact":
        assert not failed, f"{name} should conform: {failed}"
    else:
        assert failed, f"{name} should diverge on some case of {[r.case.name for r in results]}"


@pytest.mark.parametrize("path", ["foreach", "fused"])
def test_torch_paths_of_adam(path):
    """torch's foreach and fused Adam, with the per-step eps, conform as the for-loop does."""
    _library("torch")
    mapping = table.find("torch", "Adam")
    results = _results(migrate.contract("torch", mapping, path), subset_cases(mapping))
    assert len(results) >= 8 and not [r.case.name for r in results if r.divergences]


@pytest.mark.parametrize("library", table.LIBRARIES)
def test_resumed_at_ten_million_steps(library):
    """A checkpoint keeps the library's own state and step count (torch's float32 `step` is
    exact to 2**24, optax's int32 `count` beyond): Adam resumed at t = 10**7 conforms."""
    _library(library)
    mapping = table.find(library, "Adam")
    impl = migrate.contract(library, mapping, migrate.LIBRARY_PATHS[library][0])
    (case,) = [c for c in migrate.class_cases(mapping)
               if c.name == "resume/Adam/float32/chainer/t=10000000"]
    result = run_case(impl, case, np)
    assert result.passed, result.divergences


def _planted(mapping, **changes):
    return dataclasses.replace(mapping, name=mapping.name + "/planted", **changes)


@pytest.mark.parametrize("library,name,changes", [
    # eps_t with beta1 where beta2 belongs
    ("torch", "Adam", {"before_step": table.find("torch", "Adam").before_step
                       .replace("beta2", "beta1")}),
    # weight decay scaled by the learning rate twice
    ("torch", "AdamW", {"build": table.find("torch", "AdamW").build
                        .replace("weight_decay_rate / alpha", "weight_decay_rate / alpha ** 2")}),
    # Chainer's v translated as torch's buffer without the -lr: a state that does not match
    ("torch", "MomentumSGD", {"state": (("v", "momentum_buffer", "-1"),)}),
])
def test_a_planted_wrong_mapping_fails(library, name, changes):
    _library(library)
    planted = _planted(table.find(library, name), **changes)
    impl = migrate.adapter_module(library).contract_for(
        dict(table.default_selection(library), **{planted.chainer: planted}))
    results = _results(impl, subset_cases(planted))
    assert [r for r in results if r.divergences], f"the planted {name} passed every case"


def test_a_translated_state_enters_with_its_rounding_bound(monkeypatch):
    """torch's momentum buffer times -lr is Chainer's v, rounded: with the declared bound the
    subnormal stream conforms; without it, the translation's rounding is a false alarm."""
    _library("torch")
    from conformance.adapters import counterpart
    mapping = table.find("torch", "MomentumSGD")
    case = next(c for c in migrate.class_cases(mapping)
                if c.name == "grads/MomentumSGD/float64/subnormalx1")
    impl = migrate.contract("torch", mapping, "for-loop")
    assert run_case(impl, case, np).passed
    monkeypatch.setattr(counterpart.Rule, "state_bounds", property(lambda rule: {}))
    result = run_case(impl, case, np)
    assert result.divergences and "state v" in result.divergences[0].array


def test_translate_bounds_the_rounding():
    from conformance.adapters.counterpart import translate
    native = np.array([3.0, -7.25, 1e-30, 0.0], dtype=np.float32)
    same, none = translate(native, 1.0, np.float32)
    assert same is native and none is None
    presented, bound = translate(native, -0.01, np.float32)
    exact = native.astype(np.float64) * -0.01
    assert presented.dtype == np.float32
    assert np.all(np.abs(presented.astype(np.float64) - exact) <= bound)
    assert np.all(bound <= 2 * np.spacing(np.abs(presented)).astype(np.float64) + 1e-300)
    # Non-finite values are matched by class: an infinite bound would accept anything.
    _, bound = translate(np.array([np.nan, np.inf, 1.0], np.float32), -0.01, np.float32)
    assert bound[0] == bound[1] == 0.0 and bound[2] > 0


@pytest.mark.parametrize("name", ["MomentumSGD", "Adam"])
def test_optax_flushes_subnormals(name):
    """XLA on the CPU flushes subnormals to zero (NumPy keeps them): an optax port that
    conforms everywhere else differs on the subnormal gradient stream, in both modes."""
    _library("optax")
    mapping = table.find("optax", name)
    impl = migrate.contract("optax", mapping, "jit")
    for mode in ("float64", "float32"):
        case = next(c for c in migrate.class_cases(mapping)
                    if c.name == f"grads/{name}/{mode}/subnormalx1")
        result = run_case(impl, case, np)
        assert result.divergences and result.divergences[0].impl_value == 0.0


def test_migrate_report_for_a_torch_port(tmp_path):
    """The report holds a port's class per path with its first divergence, the drift at
    steps 1, 10 and 100 on three streams beside fast's floor, the defaults that differ and
    the versions."""
    _library("torch")
    report = migrate.migrate("torch", jobs=1, only=("AdaGrad/default-eps",))
    paths = migrate.write(report, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["migration-torch.json", "migration-torch.md"]
    assert report["versions"]["torch"].startswith("2.")
    (record,) = report["chainer"]
    (naive,) = record["ports"]
    for path in ("for-loop", "foreach", "fused"):
        assert naive["classes"][path]["class"] == "differs"
        assert naive["classes"][path]["first_divergence"].startswith("matrix/AdaGrad/float64")
    assert {"argument": "eps", "torch": "1e-10", "chainer": "eps=1e-08"} in naive["defaults"]
    for drift in (naive["drift"], record["floor"]):
        assert set(drift) == {"x1", "x1e-3", "x1e-6"}
        assert all(set(by_step) == {"1", "10", "100"} for by_step in drift.values())
    assert naive["drift"]["x1e-6"]["1"] > 10 * record["floor"]["x1e-6"]["1"]
    text = (tmp_path / "migration-torch.md").read_text()
    assert "torch.optim.Adagrad(params, lr=lr)" in text and "**differs**" in text


def test_migrate_refuses_an_unknown_library_or_mapping():
    from conformance.target import UsageError
    with pytest.raises(UsageError, match="--to must be one of"):
        migrate.adapter_module("jax")
    _library("torch")
    with pytest.raises(UsageError, match="unknown torch mapping"):
        migrate.migrate("torch", only=("Adamm",))


def test_a_teams_port_gated_by_the_command_line(tmp_path):
    """examples/my_torch_port.py (Adam with the per-step eps, fused; the clipping recipe)
    passes the gate; the same port with plain eps fails it, with a reproduce line."""
    _library("torch")
    from conformance_cli import ROOT, conformance, reproduce_lines
    arguments = ("gate", "--filter", "matrix/Adam/float64", "--jobs", "1")
    proc = conformance(*arguments, "--impl", "examples.my_torch_port")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout and "not applicable" in proc.stdout
    with open(f"{ROOT}/examples/my_torch_port.py") as f:
        source = f.read()
    assert source.count("    before_step=EPS_T,\n") == 1
    (tmp_path / "plain_eps_port.py").write_text(source.replace("    before_step=EPS_T,\n", ""))
    proc = conformance(*arguments, "--impl", "plain_eps_port", cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert reproduce_lines(proc.stdout) == [
        "python -m conformance gate --impl plain_eps_port --device cpu --level ci --case "
        "matrix/Adam/float64/nohook/none/chainer"]
