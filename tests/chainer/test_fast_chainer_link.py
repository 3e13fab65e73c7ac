"""A Chainer Link as the optimization target."""

import numpy as np
import pytest

import chainer
import chainer.functions as F
import chainer.links as L

import fast
from tests.fast.fast_testkit import gradients


def linear_link(seed=0):
    np.random.seed(seed)
    return L.Linear(4, 3)


def twin_parameters(link):
    """fast.Parameters holding copies of the link's values, under the link's names."""
    return {name.lstrip("/"): fast.Parameter(p.array.copy(), name=name)
            for name, p in link.namedparams()}


def test_link_parameters_update_as_fast_parameters_do(tmp_path):
    link = linear_link()
    twins = twin_parameters(link)
    on_link = fast.optimizers.Adam().setup(link)
    on_twins = fast.optimizers.Adam().setup(twins)
    for step in range(3):
        grads = gradients(twins, step)
        for name, p in link.namedparams():
            p.grad = grads[name.lstrip("/")].copy()
        for name, g in grads.items():
            twins[name].grad = g
        on_link.update()
        on_twins.update()
    for name, p in link.namedparams():
        np.testing.assert_array_equal(p.array, twins[name.lstrip("/")].data, err_msg=name)
    path = tmp_path / "link.npz"
    fast.serializers.save_npz(str(path), on_link)
    with np.load(path) as archive:
        assert {"W/t", "W/m", "W/v", "b/t", "b/m", "b/v"} <= set(archive.files)


def test_update_with_a_loss_function_matches_explicit_backward():
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    target = np.zeros((8, 3), np.float32)

    with_lossfun, explicit = linear_link(), linear_link()
    opt_a = fast.optimizers.MomentumSGD(lr=0.1).setup(with_lossfun)
    opt_b = fast.optimizers.MomentumSGD(lr=0.1).setup(explicit)
    for _ in range(3):
        opt_a.update(lambda: F.mean_squared_error(with_lossfun(x), target))
        explicit.cleargrads()
        F.mean_squared_error(explicit(x), target).backward()
        opt_b.update()
    np.testing.assert_array_equal(with_lossfun.W.array, explicit.W.array)
    np.testing.assert_array_equal(with_lossfun.b.array, explicit.b.array)


def test_loss_function_is_backpropagated_with_the_loss_scale():
    x = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    target = np.ones((8, 3), np.float32)
    scaled, plain = linear_link(), linear_link()
    opt_scaled = fast.optimizers.SGD(lr=0.1).setup(scaled)
    opt_scaled.set_loss_scale(256.0)
    opt_plain = fast.optimizers.SGD(lr=0.1).setup(plain)
    opt_scaled.update(lambda: F.mean_squared_error(scaled(x), target))
    opt_plain.update(lambda: F.mean_squared_error(plain(x), target))
    np.testing.assert_allclose(scaled.W.array, plain.W.array, rtol=1e-6)


@pytest.mark.parametrize("use_master", [False, True])
def test_a_rule_hook_sees_the_parameter_name_chainer_gives_it(use_master):
    """Chainer calls a rule's hooks with the parameter (its fp32 master copy, named after it,
    with use_fp32_update), so the hook sees the link's attribute name, not the path."""
    seen = {}
    for impl, optimizers in (("chainer", chainer.optimizers), ("fast", fast.optimizers)):
        link = linear_link()
        if use_master:
            for p in link.params():
                p.array = p.array.astype(np.float16)
        opt = optimizers.SGD(lr=0.1)
        opt.setup(link)
        names = seen[impl] = []
        for _, p in sorted(link.namedparams()):
            p.grad = np.ones_like(p.array)
            p.update_rule.add_hook(lambda rule, param, names=names: names.append(param.name),
                                   name="record")
            if use_master:
                p.update_rule.use_fp32_update()
        opt.update()
        assert all(p.array.dtype == (np.float16 if use_master else np.float32)
                   for p in link.params())
    assert seen["fast"] == seen["chainer"] == ["W", "b"]
