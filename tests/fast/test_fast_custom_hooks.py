"""User-written hooks: optimizer-level callables (once per step, or per parameter with
`call_for_each_param`), 'pre' and 'post' timing, and update-rule hooks, which Chainer calls
with the rule and the parameter it updates (the fp32 master with its unscaled gradient)."""

import numpy as np
import pytest

from fast_testkit import gradients, make_optimizer, run_steps, set_grads, snapshot

LR = 0.125


def sgd(mode="float64", profile="chainer"):
    return make_optimizer("SGD", mode, profile, lr=LR)


def test_optimizer_hook_can_edit_gradients_before_the_step():
    opt, params = sgd()

    def zero_b(optimizer):
        assert optimizer is opt
        params["b"].grad[...] = 0

    opt.add_hook(zero_b, name="zero_b", timing="pre")
    before = {k: p.data.copy() for k, p in params.items()}
    grads = gradients(params, 0)
    set_grads(params, {k: g.copy() for k, g in grads.items()})
    opt.update()
    np.testing.assert_array_equal(params["b"].data, before["b"])
    np.testing.assert_array_equal(params["w"].data, before["w"] - LR * grads["w"])


def test_post_hook_sees_the_updated_parameters_and_t():
    opt, params = sgd()
    seen = []
    opt.add_hook(lambda o: seen.append((o.t, params["w"].data.copy())), name="watch",
                 timing="post")
    run_steps(opt, params, 2)
    assert [t for t, _ in seen] == [1, 2]
    np.testing.assert_array_equal(seen[-1][1], params["w"].data)


def test_per_parameter_hook_is_called_with_each_rule_and_parameter():
    opt, params = sgd()
    calls = []

    def record(rule, param):
        calls.append((rule, param.shape))

    record.call_for_each_param = True
    opt.add_hook(record, name="record")
    run_steps(opt, params, 1)
    assert sorted(shape for _, shape in calls) == [(3, 4), (5,)]
    assert {id(rule) for rule, _ in calls} == {id(p.update_rule) for p in params.values()}


def test_hook_timing_falls_back_to_the_hooks_attribute_and_then_pre():
    opt, params = sgd()
    order = []

    def late(o):
        order.append("post")

    late.timing = "post"

    def early(o):
        order.append("pre")

    opt.add_hook(late, name="late")
    opt.add_hook(early, name="early")
    run_steps(opt, params, 1)
    assert order == ["pre", "post"]


def test_call_hooks_runs_pre_hooks_on_the_current_gradients():
    opt, params = sgd()
    opt.add_hook(lambda o: params["w"].grad.__imul__(0.5), name="halve", timing="pre")
    grads = gradients(params, 0)
    set_grads(params, {k: g.copy() for k, g in grads.items()})
    opt.call_hooks("pre")
    np.testing.assert_array_equal(params["w"].grad, grads["w"] * 0.5)


def test_rule_hook_changes_only_its_parameter():
    opt, params = sgd()
    params["w"].update_rule.add_hook(lambda rule, param: param.grad.__imul__(2.0),
                                     name="double", timing="pre")
    before = {k: p.data.copy() for k, p in params.items()}
    grads = gradients(params, 0)
    set_grads(params, {k: g.copy() for k, g in grads.items()})
    opt.update()
    np.testing.assert_array_equal(params["w"].data, before["w"] - LR * 2.0 * grads["w"])
    np.testing.assert_array_equal(params["b"].data, before["b"] - LR * grads["b"])


@pytest.mark.parametrize("profile", ["chainer", "fixed"])
def test_rule_hook_sees_the_fp32_master_and_the_unscaled_gradient(profile):
    opt, params = sgd("fp16_master", profile)
    opt.set_loss_scale(64.0)
    seen = {}

    def inspect_param(rule, param):
        seen["data"] = np.array(param.data, copy=True)
        seen["grad"] = np.array(param.grad, copy=True)

    params["w"].update_rule.add_hook(inspect_param, name="inspect", timing="pre")
    run_steps(opt, params, 1)
    master_after = params["w"].update_rule.fp32_param
    grads = gradients(params, 0, scale=64.0)
    assert seen["data"].dtype == np.float32 and seen["grad"].dtype == np.float32
    np.testing.assert_array_equal(seen["grad"], grads["w"].astype(np.float32) / 64.0)
    np.testing.assert_array_equal(master_after, np.float32(seen["data"] - np.float32(LR)
                                                            * seen["grad"]))


def test_rule_post_hook_sees_the_updated_parameter():
    opt, params = sgd()
    seen = []
    params["b"].update_rule.add_hook(lambda rule, param: seen.append(param.data.copy()),
                                     name="after", timing="post")
    run_steps(opt, params, 1)
    np.testing.assert_array_equal(seen[0], params["b"].data)


def test_removing_a_rule_hook_restores_the_plain_update():
    opt, params = sgd()
    rule = params["w"].update_rule
    rule.add_hook(lambda r, p: p.grad.__imul__(0.0), name="freeze")
    rule.remove_hook("freeze")
    before = snapshot(opt, params)
    run_steps(opt, params, 1)
    assert np.any(params["w"].data != before["w.data"])
