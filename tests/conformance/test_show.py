"""`python -m conformance show CASE`: the case's definition and the exact inputs of each step."""
import numpy as np

from conformance import generators, streams
from conformance.cli import main
from conformance.show import _array, gradient_steps

DYNAMIC = "matrix/MomentumSGD/float16/nohook/dynamic/chainer"


def _case(name, ranks=1):
    return next(c for c in generators.ci_suite("ci", ranks=ranks) if c.name == name)


def test_show_prints_the_hyperparameters_and_every_steps_gradients(capsys):
    assert main(["show", "variant/Adam/float32/amsgrad=True"]) == 0
    out = capsys.readouterr().out
    assert ("optimizer: Adam(alpha=0.001, beta1=0.9, beta2=0.999, eps=1e-08, eta=1.0, "
            "weight_decay_rate=0, amsgrad=True, adabound=False, final_lr=0.1, gamma=0.001)") in out
    assert "set by the case: amsgrad=True; the others are Chainer's defaults" in out
    case = _case("variant/Adam/float32/amsgrad=True")
    for step in range(1, case.steps + 1):
        assert f"  step {step}, loss scale None:" in out
        grad = streams.gradient(case, 0, case.params[0], step, None)
        assert _array(grad, "      ") in out
    assert f"repr (for --case-repr): {case!r}" in out


def test_the_gradients_carry_the_references_loss_scale_through_a_skipped_step():
    case = _case(DYNAMIC)
    recorded, raised = gradient_steps(case)
    # Dynamic scaling from 1 with interval 2: doubled after step 1, halved by the inf at step 2.
    assert [(step, scale) for step, scale, _ in recorded] == [(1, 1.0), (2, 2.0), (3, 1.0)]
    assert raised is None
    [(rank, grad)] = recorded[1][2]["p0"]
    assert rank is None and np.isinf(grad).all() and grad.dtype == np.float16


def test_a_case_whose_update_raises_says_so(capsys):
    assert main(["show", "error/Adam-tiny-eps/float32"]) == 0
    out = capsys.readouterr().out
    assert ("the reference's update raises ValueError: eps of Adam optimizer is too small for "
            "float32 (1e-60) at step 1") in out


def test_a_distributed_case_shows_each_ranks_gradient(capsys):
    name = "ranks2/matrix/SGD/float64/replicated/E=D/chainer"
    assert main(["show", name]) == 0
    out = capsys.readouterr().out
    case = _case(name, ranks=2)
    for rank in (0, 1):
        grad = streams.gradient(case, 0, case.params[0], 1, None, rank=rank)
        assert f"    /p0 on rank {rank}:\n{_array(grad, '      ')}" in out


def test_an_unknown_case_is_a_usage_error_with_the_close_names(capsys):
    assert main(["show", "matrix/SGD/float6/nohook/none/chainer"]) == 2
    assert "close: matrix/SGD/float64/nohook/none/chainer" in capsys.readouterr().err
