"""Which cases an implementation can run: each optional part of the API, found by looking."""
import types

import pytest

from conformance import generators
from conformance.applicability import missing
from conformance.cases import Case, HookSpec, LossScaling, ParamSpec, Resume
from conformance.target import LEVEL_NAMES

PARAMS = (ParamSpec("p0", (3,)),)


class Plain:
    """An optimizer class with Adam's arguments and nothing optional."""

    def __init__(self, alpha=0.001, eps=1e-8):
        pass


class Full(Plain):
    def __init__(self, alpha=0.001, eps=1e-8, *, profile="chainer"):
        pass

    def use_fp32_update(self, flag=True):
        pass

    def loss_scaling(self, interval=1000, scale=None):
        pass


class Open:
    def __init__(self, **kwargs):
        pass


def module(optimizers, hooks=None, serializers=None):
    impl = types.SimpleNamespace(Parameter=object, optimizers=types.SimpleNamespace(**optimizers))
    if hooks is not None:
        impl.optimizer_hooks = types.SimpleNamespace(**hooks)
    if serializers is not None:
        impl.serializers = serializers
    return impl


def case(**kwargs):
    return Case(name="c", optimizer=kwargs.pop("optimizer", "Adam"), params=PARAMS, **kwargs)


def test_a_plain_case_needs_only_the_optimizer():
    assert missing(module({"Adam": Plain}), case()) == []
    assert missing(module({}), case()) == ["the implementation has no optimizer Adam"]
    assert missing(module({"Adam": Plain}), case(optimizer="AdamW")) == [
        "the implementation has no optimizer AdamW"]


def test_each_optional_part_is_named_when_missing():
    impl = module({"Adam": Plain})
    assert missing(impl, case(hyperparams=(("amsgrad", True),))) == [
        "Adam takes no argument amsgrad"]
    assert missing(impl, case(overrides=(("p0", "beta1", 0.5),))) == [
        "Adam takes no argument beta1"]
    assert missing(impl, case(profile="fixed")) == [
        "Adam takes no argument profile (the cases of the 'fixed' profile)"]
    assert missing(impl, case(dtype_mode="float16_master")) == [
        "Adam has no use_fp32_update (fp32 master weights)"]
    assert missing(impl, case(loss_scaling=LossScaling("dynamic", None, 2))) == [
        "Adam has no loss_scaling"]
    assert missing(impl, case(hooks=(HookSpec("Lasso", (0.1,)),))) == [
        "the implementation has no optimizer hook Lasso"]
    assert missing(impl, case(checkpoints=(1,))) == [
        "the implementation has no serializers (save_npz, load_npz): checkpoints"]
    assert missing(impl, case(resume=Resume(1002, (1000,), ()))) == [
        "the implementation has no serializers (save_npz, load_npz): resumed from a checkpoint"]


def test_the_parts_when_present():
    serializers = types.SimpleNamespace(save_npz=print, load_npz=print)
    impl = module({"Adam": Full}, hooks={"Lasso": object}, serializers=serializers)
    everything = case(profile="fixed", dtype_mode="float16_master", checkpoints=(1,),
                      loss_scaling=LossScaling("static", 8.0), hooks=(HookSpec("Lasso", (0.1,)),),
                      overrides=(("p0", "alpha", 0.5),))
    assert missing(impl, everything) == []
    assert missing(impl, case(hooks=(HookSpec("WeightDecay", (0.1,)),))) == [
        "the implementation has no optimizer hook WeightDecay"]
    assert missing(module({"Adam": Open}), case(hyperparams=(("amsgrad", True),))) == []


@pytest.mark.parametrize("name", ["fast", "reference"])
def test_the_projects_implementations_can_run_every_ci_case(name):
    impl = __import__(name)
    lacking = [(c.name, missing(impl, c)) for c in generators.ci_suite("ci") if missing(impl, c)]
    assert not lacking, lacking[:3]


def test_the_level_names_are_the_generators_levels():
    assert set(LEVEL_NAMES) == set(generators.LEVELS)
