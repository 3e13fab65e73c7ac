"""Train a Chainer model with a `fast` optimizer.

A Chainer Link is a valid optimization target: `fast` reads its `namedparams()`, and
`opt.update(lossfun, *args)` calls `lossfun(*args)`, clears the gradients, runs
`loss.backward()` (with the loss scale when loss scaling is on) and updates every
parameter, as Chainer's own optimizers do.

The model is a two-layer perceptron classifying points of two interleaved half-moons
(the same data as examples/train_numpy.py). Needs chainer 7.8.1, which imports only with
NumPy < 2 (`pip install chainer "numpy<2"`).
Run it with `python examples/train_chainer.py` from the repository root.
"""

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

import fast


def half_moons(n_points, rng):
    """Points of two interleaved half circles (float32) and their int32 labels."""
    angle = rng.uniform(0.0, np.pi, n_points)
    label = rng.integers(0, 2, n_points)
    x = np.where(label == 0, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(label == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + rng.normal(0.0, 0.1, (n_points, 2))
    return points.astype(np.float32), label.astype(np.int32)


class Perceptron(chainer.Chain):
    """Two inputs, one hidden tanh layer, two class scores."""

    def __init__(self, n_hidden=16):
        super().__init__()
        with self.init_scope():
            self.hidden = L.Linear(2, n_hidden)
            self.out = L.Linear(n_hidden, 2)

    def forward(self, x):
        return self.out(F.tanh(self.hidden(x)))


def main(steps=200, seed=0):
    """Train for `steps` full-batch steps and return the loss before each step."""
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # Chainer's default initializers draw from NumPy's global RNG
    x, t = half_moons(512, rng)
    model = Perceptron()

    opt = fast.optimizers.Adam(alpha=0.02)
    opt.setup(model)
    opt.add_hook(fast.optimizer_hooks.WeightDecay(1e-4))

    losses = []

    def lossfun(inputs, labels):
        loss = F.softmax_cross_entropy(model(inputs), labels)
        losses.append(float(loss.array))
        return loss

    for _ in range(steps):
        opt.update(lossfun, x, t)
    return losses


if __name__ == "__main__":
    losses = main()
    print(f"Chainer model trained by fast.optimizers.Adam: loss {losses[0]:.4f} -> "
          f"{losses[-1]:.4f}")
