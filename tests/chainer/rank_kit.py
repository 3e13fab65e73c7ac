"""The two sides of the tests under ``mpiexec -n 2``: the rank scripts' loop over their
scenarios (``run_scenarios``), and the test modules' launch and reading of what the ranks
wrote (``launched``, ``RankFiles``).

A scenario returns arrays (key -> NumPy array), written to OUTDIR/<scenario>-rank<r>.npz;
OUTDIR/rank<r>.json maps each scenario to "ok" or to the error it raised ("Type: message").
A scenario that raises on every rank at the same call lets the next one run; one that leaves
a rank waiting in a collective hangs the launch until the test's time limit.
"""
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

from tests.distributed.test_distributed_mpi import launch

N_RANKS = 2
LAUNCH_TIMEOUT_S = 120


def run_scenarios(scenarios, rank, outdir):
    """Run each of `scenarios` (name -> function of nothing returning arrays) in order, and
    write its arrays and the verdicts (see the module doc)."""
    verdicts = {}
    for name, scenario in scenarios.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arrays = scenario()
            np.savez(os.path.join(outdir, "{}-rank{}.npz".format(name, rank)), **arrays)
            verdicts[name] = "ok"
        except Exception as err:
            verdicts[name] = "{}: {}".format(type(err).__name__, err)
            print("rank {} scenario {}:\n{}".format(rank, name, traceback.format_exc()),
                  file=sys.stderr, flush=True)
    with open(os.path.join(outdir, "rank{}.json".format(rank)), "w") as f:
        json.dump(verdicts, f, indent=1)


def with_prefix(prefix, arrays):
    """`arrays` with its keys under `prefix`/ (a key's leading / dropped)."""
    return {prefix + "/" + key.lstrip("/"): value for key, value in arrays.items()}


class RankFiles(object):
    """What the ranks of one launch wrote into `outdir`."""

    def __init__(self, outdir):
        self.outdir = Path(outdir)
        self.verdicts = [json.loads((self.outdir / "rank{}.json".format(r)).read_text())
                         for r in range(N_RANKS)]

    def arrays(self, scenario, part):
        """Per rank, the arrays under `part`/ of `scenario` (keys without the prefix),
        failing with the ranks' errors if the scenario raised."""
        errors = [v[scenario] for v in self.verdicts if v[scenario] != "ok"]
        assert not errors, "{} raised: {}".format(scenario, errors)
        out = []
        for r in range(N_RANKS):
            with np.load(self.outdir / "{}-rank{}.npz".format(scenario, r)) as f:
                out.append({k[len(part) + 1:]: f[k] for k in f.files if k.startswith(part + "/")})
        return out


def launched(script, outdir):
    """RankFiles of `script` run on N_RANKS ranks with `outdir` as its argument (the test
    fails if the launch fails or runs past LAUNCH_TIMEOUT_S: a hang)."""
    status, out = launch(N_RANKS, outdir, script=script, timeout=LAUNCH_TIMEOUT_S)
    assert status == 0, out[-4000:]
    return RankFiles(outdir)
