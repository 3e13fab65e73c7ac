"""``pickle`` and ``copy.deepcopy`` of optimizers set up on Chainer links, at three moments
(before any forward, while the lazily initialized parameters have no array; before the
first step; after two steps): the copy, with its own link, continues bit for bit as the
original does, and as a copy of Chainer's optimizer made at the same moment does."""
import copy
import pickle

import pytest

from tests.chainer.chainer_kit import (
    IMPLEMENTATIONS, MLP, assert_same_training, blobs, classification_loss, finish_setup,
    input_dtype, make_optimizer, seeded)

#: (optimizer, configuration): Adam's state, fp16 with masters and dynamic loss scaling,
#: the rules' extra values (AdaBound's initial_alpha, MSVAG's beta_power)
CASES = [("Adam", "float32"), ("Adam", "mixed16"), ("MomentumSGD", "float64"),
         ("AdaBound", "float32"), ("MSVAG", "float32")]
MOMENTS = {"before-any-forward": (False, 0), "before-the-first-step": (True, 0),
           "after-two-steps": (True, 2)}
COPIES = {"pickle": lambda opt: pickle.loads(pickle.dumps(opt)), "deepcopy": copy.deepcopy}


def copied_and_continued(impl, name, config, moment, how):
    """(the original, its copy) made at `moment`, each then trained two more steps on the
    same batch from the same RNG state."""
    forward, steps = MOMENTS[moment]
    x, t = blobs(dtype=input_dtype(config))
    with seeded(config):
        model = MLP()
        opt = finish_setup(make_optimizer(impl, name).setup(model), config)
        opt.add_hook(IMPLEMENTATIONS[impl][1].WeightDecay(1e-3))
        if config == "mixed16":
            opt.loss_scaling(interval=1)
        if forward:
            model(x)
        for _ in range(steps):
            opt.update(classification_loss(model), x, t)
        twin = COPIES[how](opt)
        assert twin.target is not opt.target
    for optimizer in (opt, twin):
        with seeded(config, seed=1):  # the same draws for a lazy link initialized now
            for _ in range(2):
                optimizer.update(classification_loss(optimizer.target), x, t)
    return opt, twin


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("name, config", CASES)
def test_a_copy_continues_as_the_original_and_as_chainers(name, config, moment, how):
    opt, twin = copied_and_continued("fast", name, config, moment, how)
    their_opt, their_twin = copied_and_continued("chainer", name, config, moment, how)
    assert_same_training(twin.target, opt.target)
    assert_same_training(twin.target, their_twin.target)
    assert (twin.t, twin.epoch, twin.loss_scale) == (opt.t, opt.epoch, opt.loss_scale) == (
        their_twin.t, their_twin.epoch, their_twin._loss_scale)
