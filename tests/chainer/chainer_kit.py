"""Shared pieces of the drop-in tests: real Chainer 7.8.1 workflows run once with
``chainer.optimizers`` and once with ``fast.optimizers`` from the same seeds and data, and
the bitwise comparison of what the two runs leave on the links.

Chainer's initializers and SerialIterator draw from NumPy's global RNG, and a lazily
initialized link draws its values at its first forward, so each run seeds it first
(``seeded``) and both runs make the same draws in the same order.
"""
import contextlib

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

import fast

#: the optimizer and hook modules of each implementation
IMPLEMENTATIONS = {
    "chainer": (chainer.optimizers, chainer.optimizer_hooks),
    "fast": (fast.optimizers, fast.optimizer_hooks),
}

#: configuration -> (Chainer's default dtype while the run builds and initializes its links,
#: whether the optimizer gets use_fp32_update()). mixed16: Linear parameters in float16 with
#: an fp32 master, BatchNormalization's in float32 (Chainer's mixed16 mode).
CONFIGS = {
    "float64": (np.float64, False),
    "float32": (np.float32, False),
    "mixed16": (chainer.mixed16, True),
}


def input_dtype(config):
    """The dtype of the data fed to the links in `config`."""
    dtype = CONFIGS[config][0]
    return np.float16 if dtype is chainer.mixed16 else dtype


@contextlib.contextmanager
def seeded(config, seed=0):
    """NumPy's global RNG seeded and Chainer's default dtype set for the run of `config`."""
    np.random.seed(seed)
    with chainer.using_config("dtype", CONFIGS[config][0]):
        yield


class MLP(chainer.Chain):
    """Linear(in_size, hidden) -> [BatchNormalization] -> ReLU -> Linear(hidden, classes).
    With in_size None (the default) both Linears are initialized lazily, at the first
    forward, as in Chainer's examples; otherwise at construction."""

    def __init__(self, hidden=6, classes=3, batchnorm=False, in_size=None):
        super().__init__()
        with self.init_scope():
            self.l1 = L.Linear(in_size, hidden)
            if batchnorm:
                self.bn = L.BatchNormalization(hidden)
            self.l2 = L.Linear(None if in_size is None else hidden, classes)
        self.batchnorm = batchnorm

    def forward(self, x):
        h = self.l1(x)
        if self.batchnorm:
            h = self.bn(h)
        return self.l2(F.relu(h))


class TwoHeads(chainer.Chain):
    """A trunk and two heads, all initialized lazily: `forward` uses the second head only
    when asked (until then its parameters have no array while the optimizer steps);
    `losses` gives each head a loss of its own."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.trunk = L.Linear(None, 6)
            self.head_a = L.Linear(None, 3)
            self.head_b = L.Linear(None, 3)

    def forward(self, x, use_b):
        h = F.relu(self.trunk(x))
        y = self.head_a(h)
        return y + self.head_b(h) if use_b else y

    def losses(self, x, t):
        h = F.relu(self.trunk(x))
        return F.softmax_cross_entropy(self.head_a(h), t), F.softmax_cross_entropy(self.head_b(h), t)


def blobs(n=24, dim=5, classes=3, dtype=np.float32, seed=0):
    """A synthetic classification set: `n` points in `dim` dimensions around `classes`
    random centres (x of `dtype`, labels int32), drawn from its own generator."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * 2
    t = rng.integers(0, classes, n).astype(np.int32)
    x = centres[t] + rng.standard_normal((n, dim))
    return x.astype(dtype), t


def make_optimizer(impl, name, **kwargs):
    """Optimizer `name` of `impl` ('chainer' or 'fast'), not set up."""
    return getattr(IMPLEMENTATIONS[impl][0], name)(**kwargs)


def finish_setup(optimizer, config):
    """What the run of `config` does after setup: use_fp32_update() in mixed16."""
    if CONFIGS[config][1]:
        optimizer.use_fp32_update()
    return optimizer


def assert_bitwise(ours, theirs, what):
    """Same dtype, shape and bytes (so -0.0 differs from 0.0, as it does in the bits)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype, "{}: dtype {} != {}".format(what, ours.dtype, theirs.dtype)
    np.testing.assert_array_equal(ours, theirs, err_msg=what)
    assert ours.tobytes() == theirs.tobytes(), "{}: equal values, different bits".format(what)


def master_of(rule):
    """The fp32 master array of a fast or a Chainer update rule, or None."""
    if isinstance(rule, chainer.UpdateRule):
        # Chainer keeps the master only as this private attribute.
        master = rule._fp32_param
        return None if master is None else master.array
    return rule.fp32_param


def training_state(link):
    """Everything training leaves on a link's parameters (trained with fast or with
    Chainer), as key -> NumPy array: ``<name>/array`` (absent while lazily uninitialized),
    ``<name>/t`` (its rule's), ``<name>/state/<key>`` and ``<name>/fp32_param``."""
    state = {}
    for name, p in sorted(link.namedparams()):
        if p.array is not None:
            state[name + "/array"] = np.array(p.array)
        rule = p.update_rule
        state[name + "/t"] = np.array(rule.t)
        for key, value in sorted((rule.state or {}).items()):
            state["{}/state/{}".format(name, key)] = np.array(value)
        master = master_of(rule)
        if master is not None:
            state[name + "/fp32_param"] = np.array(master)
    return state


def assert_same_state(state, reference):
    """Two training_state() mappings hold the same keys and the same bits."""
    assert sorted(state) == sorted(reference), "keys differ: {}".format(sorted(set(state) ^ set(reference)))
    for key in sorted(reference):
        assert_bitwise(state[key], reference[key], key)


def assert_same_training(link, reference_link):
    """The parameters of the two links (each trained with fast or with Chainer) hold the
    same arrays, rule counts, state and masters, bit for bit."""
    assert_same_state(training_state(link), training_state(reference_link))


def classification_loss(model):
    """The loss function Chainer's examples hand to update(): softmax cross entropy."""
    return lambda x, t: F.softmax_cross_entropy(model(x), t)


ADAM_FAMILY = ("Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound")

