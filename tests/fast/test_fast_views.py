"""`rule.state[...]` and `rule.fp32_param` are live views of the engine's buffers, on a
fresh optimizer and after a checkpoint was loaded: writing a view changes what the next
step uses, and a step updates views obtained before it."""

import numpy as np
import pytest

import fast
from fast_testkit import gradients, make_optimizer, run_steps, set_grads, snapshot

SOURCES = ("fresh", "loaded")


def optimizer_after_two_steps(name, mode, source, tmp_path, **kwargs):
    """An optimizer that has taken two steps, either itself or restored from a checkpoint
    of one that did, into a fresh optimizer over equal parameter values."""
    opt, params = make_optimizer(name, mode, "fixed", **kwargs)
    run_steps(opt, params, 2)
    if source == "fresh":
        return opt, params
    path = tmp_path / "two_steps.npz"
    fast.serializers.save_npz(str(path), opt)
    restored, restored_params = make_optimizer(name, mode, "fixed", **kwargs)
    for key, p in restored_params.items():
        p.data[...] = params[key].data
    fast.serializers.load_npz(str(path), restored)
    return restored, restored_params


@pytest.mark.parametrize("source", SOURCES)
def test_writing_a_state_view_changes_the_next_step(source, tmp_path):
    opt, params = optimizer_after_two_steps("MomentumSGD", "float64", source, tmp_path,
                                            lr=0.1, momentum=0.5)
    w, b = params["w"], params["b"]
    b_state_before = b.update_rule.state["v"].copy()
    w.update_rule.state["v"][...] = 2.0
    np.testing.assert_array_equal(b.update_rule.state["v"], b_state_before)

    w_before = w.data.copy()
    grads = gradients(params, 7)
    set_grads(params, grads)
    opt.update()
    velocity = 0.5 * 2.0 - 0.1 * grads["w"]
    np.testing.assert_allclose(w.update_rule.state["v"], velocity, rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(w.data, w_before + velocity, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("source", SOURCES)
def test_writing_the_master_view_changes_the_next_step(source, tmp_path):
    opt, params = optimizer_after_two_steps("SGD", "fp16_master", source, tmp_path, lr=0.25)
    w = params["w"]
    w.update_rule.fp32_param[...] = 0.5
    w.grad = np.full(w.shape, 0.5, np.float16)
    params["b"].grad = np.zeros(params["b"].shape, np.float16)
    opt.update()
    np.testing.assert_array_equal(w.update_rule.fp32_param, np.float32(0.375))
    np.testing.assert_array_equal(w.data, np.float16(0.375))


@pytest.mark.parametrize("mode", ["float32", "fp16_master", "fp16"])
@pytest.mark.parametrize("source", SOURCES)
def test_a_step_updates_views_obtained_before_it(source, mode, tmp_path):
    opt, params = optimizer_after_two_steps("AMSGrad", mode, source, tmp_path)
    views = {key: dict(p.update_rule.state) for key, p in params.items()}
    masters = {key: p.update_rule.fp32_param for key, p in params.items()}
    before = snapshot(opt, params)
    run_steps(opt, params, 1, first_step=5)
    for key, p in params.items():
        for state_key, view in views[key].items():
            np.testing.assert_array_equal(view, p.update_rule.state[state_key])
        assert np.any(views[key]["m"] != before[f"{key}.state.m"]), key
        if masters[key] is not None:
            np.testing.assert_array_equal(masters[key], p.update_rule.fp32_param)
            assert np.any(masters[key] != before[f"{key}.fp32_param"]), key


def test_loaded_state_does_not_alias_the_checkpoint_source(tmp_path):
    """Loading copies values into the engine: later steps of the source optimizer do not
    leak into the restored one."""
    source, params = make_optimizer("Adam", "float32", "fixed")
    run_steps(source, params, 2)
    path = tmp_path / "ckpt.npz"
    fast.serializers.save_npz(str(path), source)
    restored, restored_params = make_optimizer("Adam", "float32", "fixed")
    fast.serializers.load_npz(str(path), restored)
    loaded_m = restored_params["w"].update_rule.state["m"].copy()
    run_steps(source, params, 1, first_step=2)
    np.testing.assert_array_equal(restored_params["w"].update_rule.state["m"], loaded_m)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["Adam", "RMSpropGraves"])
@pytest.mark.parametrize("shares", ["param", "state"])
def test_a_gradient_sharing_memory_with_a_written_buffer(name, dtype, shares):
    """The kernel reads a gradient in the compute dtype where it lies, unless it shares
    memory with an array the update writes: then it must act as on a copy."""
    def run(share):
        p = fast.Parameter(np.linspace(-1.0, 1.0, 3000).astype(dtype))
        opt = getattr(fast.optimizers, name)()
        opt.setup({"p": p})
        p.grad = np.full(3000, 0.25, dtype)
        opt.update()  # creates the state
        state = next(iter(p.update_rule.state.values()))
        source = p.data if shares == "param" else state
        p.grad = source if share else source.copy()
        opt.update()
        return p.data.copy(), {k: v.copy() for k, v in p.update_rule.state.items()}

    shared_data, shared_state = run(share=True)
    copied_data, copied_state = run(share=False)
    assert np.array_equal(shared_data, copied_data)
    for key in copied_state:
        assert np.array_equal(shared_state[key], copied_state[key]), key
