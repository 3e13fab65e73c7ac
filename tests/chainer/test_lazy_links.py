"""Lazily initialized links (``L.Linear(None, n)``), set up before their first forward, with
fast.optimizers against chainer.optimizers: bit for bit in float64, float32 and mixed16
(float16 with an fp32 master)."""
import chainer
import chainer.functions as F
import pytest

from tests.chainer.chainer_kit import (
    CONFIGS, MLP, assert_same_training, blobs, classification_loss,
    finish_setup, input_dtype, make_optimizer, seeded, TwoHeads)
from tests.fast.fast_testkit import OPTIMIZER_NAMES

STEPS = 3


def train(impl, name, config, style, steps=STEPS):
    """An MLP set up before its first forward, trained `steps` steps on one batch, either
    through update(lossfun, x, t) or cleargrads / backward / update()."""
    x, t = blobs(dtype=input_dtype(config))
    with seeded(config):
        model = MLP()
        opt = finish_setup(make_optimizer(impl, name).setup(model), config)
        lossfun = classification_loss(model)
        for _ in range(steps):
            if style == "lossfun":
                opt.update(lossfun, x, t)
            else:
                model.cleargrads()
                lossfun(x, t).backward()
                opt.update()
    return model


@pytest.mark.parametrize("style", ["lossfun", "explicit"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_lazy_mlp_trains_as_chainer(name, config, style):
    assert_same_training(train("fast", name, config, style), train("chainer", name, config, style))


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_a_rule_steps_while_its_parameter_has_no_array(name):
    """Chainer's rule counts the steps taken before its parameter has an array (rule.t += 1
    and nothing else), so head_b starts with t = 3 (Adam's bias correction at step 3)."""
    x, t = blobs()
    runs = {}
    for impl in ("chainer", "fast"):
        with seeded("float32"):
            model = TwoHeads()
            opt = make_optimizer(impl, name).setup(model)
            for step in range(5):
                use_b = step >= 2
                opt.update(lambda: F.softmax_cross_entropy(model(x, use_b), t))
                if step == 1:
                    assert model.head_b.W.array is None
                    assert model.head_b.W.update_rule.t == 2, impl
        runs[impl] = model
    assert runs["fast"].head_b.W.update_rule.t == 5
    assert_same_training(runs["fast"], runs["chainer"])


class TrainerOrder(object):
    """One optimizer and its model as a Trainer snapshot holds them: StandardUpdater's
    serialize writes and reads the optimizer first, then the model."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def serialize(self, serializer):
        self.optimizer.serialize(serializer["optimizer:main"])
        self.optimizer.target.serialize(serializer["model:main"])


def resumed(impl, name, config, path):
    """Two steps, a snapshot, then a fresh lazily built model and optimizer (set up before
    any forward) that load it, optimizer first, and take two more steps."""
    x, t = blobs(dtype=input_dtype(config))
    with seeded(config):
        model = MLP()
        opt = finish_setup(make_optimizer(impl, name).setup(model), config)
        for _ in range(2):
            opt.update(classification_loss(model), x, t)
        chainer.serializers.save_npz(str(path), TrainerOrder(opt))
        model = MLP()
        opt = finish_setup(make_optimizer(impl, name).setup(model), config)
        chainer.serializers.load_npz(str(path), TrainerOrder(opt))
        for _ in range(2):
            opt.update(classification_loss(model), x, t)
    return model


@pytest.mark.parametrize("config", ["float32", "mixed16"])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_a_snapshot_resumes_into_a_fresh_lazy_model(name, config, tmp_path):
    assert_same_training(resumed("fast", name, config, tmp_path / "fast.npz"),
                         resumed("chainer", name, config, tmp_path / "chainer.npz"))
