"""Train the README's two-layer network on several ranks, ZeRO-sharded.

    mpiexec -n 2 python examples/train_distributed.py [--steps 300] [--replicated] [--json PATH]

The network, data and loss are examples/train_numpy.py's, trained the way large models are:
float16 parameters, fp32 master weights and dynamic loss scaling. The global batch is the
same 512 points; rank r of N takes points r, r + N, r + 2N, ... (an equal share), computes
the gradient of the mean loss over its share, multiplies it by the loss scale and hands it
to the multi-node optimizer, whose `update()` averages the gradients over the ranks (summed
in float32, `allreduce_grad_dtype`, then halved and rounded back to float16) and steps.
With `zero=True` (the default here) each rank keeps the fp32 master and Adam's state of its
shard of the parameters only, updates that shard, and the ranks all-gather the parameters;
`--replicated` keeps everything on every rank (ChainerMN's way). Both give the same bits. The mean of the shares' gradients is the global batch's
gradient, so the run follows the one-process run on the global batch except for rounding:
each share's gradient is rounded to float16 before the average instead of the whole
gradient once.

`one_process_averaging_shares` is that rounding written out in one process: it computes
the N shares' gradients itself and averages them as the ranks do. The distributed run
equals it bit for bit (the loss curve and the parameters); rank 0 prints both curves'
distance to the plain one-process run (`train_numpy.main`).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fast  # noqa: E402
from train_numpy import half_moons, init_params, loss_and_grads  # noqa: E402

GLOBAL_BATCH = 512


def setup(seed):
    """The global batch and the initial float16 parameters (train_numpy.main's draws)."""
    rng = np.random.default_rng(seed)
    x, y = half_moons(GLOBAL_BATCH, rng)
    return x, y, init_params(16, np.float16, rng)


def configure(opt, params):
    """train_numpy's optimizer: Adam, WeightDecay, fp32 masters, dynamic loss scaling."""
    opt.setup(params)
    opt.add_hook(fast.optimizer_hooks.WeightDecay(1e-4))
    opt.use_fp32_update()
    opt.loss_scaling()
    return opt


def share(x, y, rank, size):
    """Rank `rank`'s points of the global batch."""
    return x[rank::size], y[rank::size]


def scaled_fp16(grads, scale):
    return {name: (g * scale).astype(np.float16) for name, g in grads.items()}


def train_distributed(comm, steps=300, seed=0, zero=True):
    """Train on `comm`'s ranks; the global-batch loss before each step (the same on every rank)."""
    import fast.distributed
    x, y, params = setup(seed)
    opt = fast.distributed.create_multi_node_optimizer(fast.optimizers.Adam(alpha=0.02), comm, zero=zero,
                                                       allreduce_grad_dtype=np.float32)
    configure(opt, params)
    xs, ys = share(x, y, comm.rank, comm.size)
    losses = []
    for _ in range(steps):
        losses.append(loss_and_grads(params, x, y)[0])
        _, grads = loss_and_grads(params, xs, ys)
        for name, g in scaled_fp16(grads, opt.loss_scale).items():
            params[name].grad = g
        opt.update()
    return losses, params, opt.state_nbytes()


def average_as_the_ranks_do(shares):
    """The multi-node optimizer's mean with allreduce_grad_dtype=float32: the float16
    gradients summed in float32 (in rank order; every order gives the same sum for two
    ranks), times float64(1/N) rounded to float32, rounded to float16."""
    total = shares[0].astype(np.float32)
    for g in shares[1:]:
        total = total + g.astype(np.float32)
    return (total.astype(np.float64) * (1.0 / len(shares))).astype(np.float32).astype(np.float16)


def one_process_averaging_shares(size, steps=300, seed=0):
    """One process doing what `size` ranks do: each share's gradient, then their average."""
    x, y, params = setup(seed)
    opt = configure(fast.optimizers.Adam(alpha=0.02), params)
    losses = []
    for _ in range(steps):
        losses.append(loss_and_grads(params, x, y)[0])
        per_rank = [scaled_fp16(loss_and_grads(params, *share(x, y, r, size))[1], opt.loss_scale)
                    for r in range(size)]
        for name in params:
            params[name].grad = average_as_the_ranks_do([g[name] for g in per_rank])
        opt.update()
    return losses, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--replicated", action="store_true", help="zero=False: every rank holds everything")
    parser.add_argument("--json", help="rank 0 writes the loss curves here")
    args = parser.parse_args(argv)
    import fast.distributed
    comm = fast.distributed.create_communicator("mpi")
    losses, params, state_bytes = train_distributed(comm, args.steps, zero=not args.replicated)
    state_bytes = comm.allgather_obj(state_bytes)
    if comm.rank != 0:
        return
    import train_numpy
    emulated, emulated_params = one_process_averaging_shares(comm.size, args.steps)
    plain = train_numpy.main(steps=args.steps, mixed_precision=True)
    same_params = all(params[k].data.tobytes() == emulated_params[k].data.tobytes() for k in params)
    print("{} ranks, {}, fp16 + fp32 master + dynamic loss scaling: loss {:.4f} -> {:.4f}".format(
        comm.size, "replicated" if args.replicated else "zero=True", losses[0], losses[-1]))
    print("  fp32 master + Adam state bytes per rank: {} (one process: {})".format(
        state_bytes, 12 * sum(p.size for p in params.values())))
    print("  equal to one process averaging the {} shares' gradients: {}".format(
        comm.size, losses == emulated and same_params))
    print("  largest loss difference to one process on the whole batch: {:.2e}".format(
        max(abs(a - b) for a, b in zip(losses, plain))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ranks": comm.size, "zero": not args.replicated, "state_nbytes_by_rank": state_bytes,
                       "distributed": losses, "one_process_averaging_shares": emulated,
                       "one_process_whole_batch": plain, "same_parameters": same_params}, f)


if __name__ == "__main__":
    main()
