"""The case model and generators: validation, determinism and matrix coverage."""
import itertools

import numpy as np
import pytest
from hypothesis import given

from conformance import generators, streams
from conformance.cases import (DTYPE_MODES, HOOK_KINDS, OPTIMIZERS, PROFILES, Case, HookSpec,
                               Injection, LossScaling, ParamSpec)


@pytest.fixture(scope="module")
def ci_cases():
    return generators.ci_suite("ci")


def test_ci_suite_covers_the_whole_matrix(ci_cases):
    seen = {(c.optimizer, c.dtype_mode, c.hooks[0].kind if c.hooks else None,
             c.loss_scaling.mode, c.profile) for c in ci_cases if c.name.startswith("matrix/")}
    expected = set(itertools.product(OPTIMIZERS, DTYPE_MODES, (None,) + HOOK_KINDS,
                                     ("none", "static", "dynamic"), PROFILES))
    assert seen == expected


def test_ci_suite_is_deterministic_with_unique_names(ci_cases):
    again = generators.ci_suite("ci")
    assert again == ci_cases
    assert len({c.name for c in ci_cases}) == len(ci_cases)


def test_ci_suite_exercises_the_special_features(ci_cases):
    assert any(c.checkpoints for c in ci_cases)
    assert any(c.disabled for c in ci_cases)
    assert any(c.overrides for c in ci_cases)
    assert any(h.param for c in ci_cases for h in c.hooks)
    assert any(i.kind == "none" for c in ci_cases for i in c.injections)
    assert any(p.shape == () for c in ci_cases for p in c.params)
    assert any(p.size == 0 for c in ci_cases for p in c.params)
    assert any(p.size > 2000 for c in ci_cases for p in c.params)
    kinds = {p.grad_kind for c in ci_cases for p in c.params}
    assert kinds == {"normal", "zeros", "fp16_overflow", "fp16_underflow", "subnormal"}


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="unknown suite level"):
        generators.ci_suite("huge")


@pytest.mark.parametrize("bad", [
    dict(optimizer="Adamax"), dict(dtype_mode="bfloat16"), dict(profile="strict"),
    dict(steps=0), dict(params=()),
    dict(params=(ParamSpec("a", (1,)), ParamSpec("a", (2,)))),
    dict(hooks=(HookSpec("Lasso", (0.1,), param="nope"),)),
])
def test_invalid_cases_name_the_problem(bad):
    spec = dict(name="x", optimizer="SGD", params=(ParamSpec("a", (3,)),))
    spec.update(bad)
    with pytest.raises(ValueError):
        Case(**spec)


def test_invalid_parts_are_rejected():
    with pytest.raises(ValueError):
        HookSpec("Dropout")
    with pytest.raises(ValueError):
        HookSpec("Lasso", timing="middle")
    with pytest.raises(ValueError):
        LossScaling("static", None)
    with pytest.raises(ValueError):
        Injection(1, "a", "zero")


def test_gradients_are_a_pure_function_of_case_and_step():
    case = Case(name="g", optimizer="SGD", params=(ParamSpec("a", (5,)),), seed=3)
    a = streams.gradient(case, 0, case.params[0], 2, None)
    b = streams.gradient(case, 0, case.params[0], 2, None)
    assert np.array_equal(a, b) and a.dtype == np.float32


def test_gradients_are_scaled_then_cast_and_injected():
    case = Case(name="g", optimizer="SGD", params=(ParamSpec("a", (4,)),), dtype_mode="float16",
                injections=(Injection(1, "a", "nan", 2), Injection(2, "a", "none")))
    g = streams.gradient(case, 0, case.params[0], 1, 8.0)
    base = streams.base_gradient(case, 0, case.params[0], 1)
    assert g.dtype == np.float16 and np.isnan(g[2])
    assert np.array_equal(g[[0, 1, 3]], (base * 8.0).astype(np.float16)[[0, 1, 3]])
    assert streams.gradient(case, 0, case.params[0], 2, None) is None


def test_injection_reaches_scalar_parameters():
    case = Case(name="g", optimizer="SGD", params=(ParamSpec("a", ()),),
                injections=(Injection(1, "a", "inf"),))
    g = streams.gradient(case, 0, case.params[0], 1, 4.0)
    assert isinstance(g, np.ndarray) and g.shape == () and np.isinf(g)


def test_overflow_stream_overflows_float16():
    case = Case(name="g", optimizer="SGD", dtype_mode="float16",
                params=(ParamSpec("a", (64,), grad_kind="fp16_overflow"),))
    g = streams.gradient(case, 0, case.params[0], 1, None)
    assert np.isinf(g).any()


def test_noise_function_is_deterministic():
    class Hook:
        eta = 0.3

    class Opt:
        t = 4
    a = streams.deterministic_noise(np, (3,), np.float32, Hook, Opt)
    b = streams.deterministic_noise(np, (3,), np.float32, Hook, Opt)
    assert np.array_equal(a, b) and a.dtype == np.float32


@generators.settings_profile("ci")
@given(generators.cases())
def test_hypothesis_cases_are_valid(case):
    assert case.steps >= 1 and case.params
    for i, spec in enumerate(case.params):
        g = streams.gradient(case, i, spec, 1, None)
        assert g is None or g.shape == spec.shape


def test_settings_profiles():
    assert generators.settings_profile("deep").max_examples == 10_000
    assert generators.settings_profile("ci").derandomize
    with pytest.raises(ValueError):
        generators.settings_profile("weekly")
