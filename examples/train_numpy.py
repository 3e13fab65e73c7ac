"""Train a two-layer network with `fast`, gradients written out in NumPy.

The task: classify points of two interleaved half-moons. The network is
    h = tanh(x W1 + b1),  p = sigmoid(h W2 + b2)
trained with the mean binary cross-entropy
    L = -mean(y log p + (1 - y) log(1 - p)).
Its gradients, with N the batch size and dz = (p - y) / N:
    dW2 = h^T dz,  db2 = sum(dz),  dh = dz W2^T,
    da  = dh * (1 - h^2),  dW1 = x^T da,  db1 = sum(da).

`main(mixed_precision=True)` runs the same training the way large models are trained:
float16 parameters, fp32 master weights (`use_fp32_update`) and dynamic loss scaling,
where every gradient handed to the optimizer is multiplied by `opt.loss_scale`.

Run it with `python examples/train_numpy.py` from the repository root.
"""

import numpy as np

import fast


def half_moons(n_points, rng):
    """Points of two interleaved half circles (float32) and their 0/1 labels."""
    angle = rng.uniform(0.0, np.pi, n_points)
    label = rng.integers(0, 2, n_points)
    x = np.where(label == 0, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(label == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + rng.normal(0.0, 0.1, (n_points, 2))
    return points.astype(np.float32), label.astype(np.float32)


def init_params(n_hidden, dtype, rng):
    """The network's parameters, named as the optimizer and its checkpoints will call them."""
    return {
        "W1": fast.Parameter(rng.normal(0.0, 1.0, (2, n_hidden)).astype(dtype), name="W1"),
        "b1": fast.Parameter(np.zeros(n_hidden, dtype), name="b1"),
        "W2": fast.Parameter(rng.normal(0.0, 0.3, (n_hidden, 1)).astype(dtype), name="W2"),
        "b2": fast.Parameter(np.zeros(1, dtype), name="b2"),
    }


def loss_and_grads(params, x, y):
    """The loss and the gradient of every parameter, computed in float32."""
    W1, b1, W2, b2 = (params[k].data.astype(np.float32) for k in ("W1", "b1", "W2", "b2"))
    h = np.tanh(x @ W1 + b1)
    logits = (h @ W2 + b2)[:, 0]
    p = 1.0 / (1.0 + np.exp(-logits))
    eps = 1e-7
    loss = -np.mean(y * np.log(p + eps) + (1.0 - y) * np.log(1.0 - p + eps))
    dz = ((p - y) / len(y))[:, None]
    dh = dz @ W2.T
    da = dh * (1.0 - h * h)
    grads = {"W1": x.T @ da, "b1": da.sum(axis=0), "W2": h.T @ dz, "b2": dz.sum(axis=0)}
    return float(loss), grads


def main(steps=300, mixed_precision=False, seed=0, checkpoint=None):
    """Train for `steps` full-batch steps and return the loss before each step.

    With `checkpoint` (a path), the optimizer's state is saved there at the end.
    """
    rng = np.random.default_rng(seed)
    x, y = half_moons(512, rng)
    dtype = np.float16 if mixed_precision else np.float32
    params = init_params(16, dtype, rng)

    opt = fast.optimizers.Adam(alpha=0.02)
    opt.setup(params)
    opt.add_hook(fast.optimizer_hooks.WeightDecay(1e-4))
    if mixed_precision:
        opt.use_fp32_update()
        opt.loss_scaling()

    losses = []
    for _ in range(steps):
        loss, grads = loss_and_grads(params, x, y)
        losses.append(loss)
        scale = 1.0 if opt.loss_scale is None else opt.loss_scale
        for name, grad in grads.items():
            params[name].grad = (grad * scale).astype(dtype)
        opt.update()

    if checkpoint is not None:
        fast.serializers.save_npz(checkpoint, opt)
    return losses


if __name__ == "__main__":
    for mixed in (False, True):
        losses = main(mixed_precision=mixed)
        label = "fp16 + fp32 master + loss scaling" if mixed else "float32"
        print(f"{label:>34}: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
