"""``loss.backward(loss_scale=S)`` without ``opt.loss_scaling()``: Chainer records S on every
parameter the backward reaches, its update rule divides that parameter's gradient by it, and
WeightDecay multiplies its rate by it. fast.optimizers against chainer.optimizers, bit for
bit. S = 3 is not a power of two, so a multiplication by 1/S where Chainer divides shows."""
import chainer.functions as F
import pytest

from tests.chainer.chainer_kit import (
    IMPLEMENTATIONS, MLP, assert_same_training, blobs, finish_setup,
    input_dtype, make_optimizer, seeded, TwoHeads)
from tests.fast.fast_testkit import OPTIMIZER_NAMES

CONFIGS = ["float64", "float32", "mixed16"]
STEPS = 3
DECAY_RATE = 1e-2


def train(impl, name, config, decay, scale):
    """An MLP trained `STEPS` steps by cleargrads / backward(loss_scale=scale) / update()."""
    x, t = blobs(dtype=input_dtype(config))
    with seeded(config):
        model = MLP()
        opt = finish_setup(make_optimizer(impl, name).setup(model), config)
        if decay:
            opt.add_hook(IMPLEMENTATIONS[impl][1].WeightDecay(DECAY_RATE))
        for _ in range(STEPS):
            model.cleargrads()
            F.softmax_cross_entropy(model(x), t).backward(loss_scale=scale)
            opt.update()
    return model


@pytest.mark.parametrize("decay", [False, True], ids=["plain", "weight-decay"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_each_gradient_is_divided_by_the_scale_backward_recorded(name, config, decay):
    assert_same_training(train("fast", name, config, decay, 3.0),
                         train("chainer", name, config, decay, 3.0))


def train_two_losses(impl, name, config):
    """Each step backwards head_a's loss with scale 2, then head_b's with scale 5: head_a's
    parameters carry 2, head_b's 5, and the trunk, reached by both (its gradients summed),
    the last one, 5."""
    x, t = blobs(dtype=input_dtype(config))
    with seeded(config):
        model = TwoHeads()
        opt = finish_setup(make_optimizer(impl, name).setup(model), config)
        opt.add_hook(IMPLEMENTATIONS[impl][1].WeightDecay(DECAY_RATE))
        for _ in range(STEPS):
            model.cleargrads()
            loss_a, loss_b = model.losses(x, t)
            loss_a.backward(loss_scale=2.0)
            loss_b.backward(loss_scale=5.0)
            opt.update()
    return model


@pytest.mark.parametrize("config", ["float32", "mixed16"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_parameters_reached_by_backwards_with_different_scales(name, config):
    assert_same_training(train_two_losses("fast", name, config),
                         train_two_losses("chainer", name, config))
