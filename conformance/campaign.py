"""The hypothesis campaign: random cases against an implementation, zero alarms expected.

Profiles (generators.PROFILE_SETTINGS): `ci` (derandomized, small), `dev`, `deep` (10,000
examples). Every profile steers the search with `target()` on the worst normalized error, so
the examples that come closest to a bound are explored further.
"""
from __future__ import annotations

import json
import math
import os
import time

import warnings

from hypothesis import given, target

from . import generators
from .adapter import load_impl
from .compare import check_case


class CampaignStats:
    def __init__(self):
        self.examples = 0
        self.worst = 0.0
        self.worst_case = None
        self.failure = None

    def record(self, case, result) -> float:
        self.examples += 1
        worst = max(result.step_errors, default=0.0)
        if worst > self.worst:
            self.worst, self.worst_case = worst, case
        return worst


def campaign(impl, profile: str, xp, examples: int | None = None, modes=None,
             per_rule_hooks=True, checkpoints=True) -> CampaignStats:
    """Run the campaign; stats.failure holds the (shrunk) failing case and divergence."""
    stats = CampaignStats()
    settings = generators.settings_profile(profile)
    if examples is not None:
        settings = type(settings)(settings, max_examples=examples)

    strategy = generators.cases(modes=tuple(modes or generators.DTYPE_MODES),
                                per_rule_hooks=per_rule_hooks, checkpoints=checkpoints)

    @settings
    @given(strategy)
    def conforms(case):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = check_case(impl, case, xp=xp)
        worst = stats.record(case, result)
        target(min(worst, 1e6) if math.isfinite(worst) else 1e6, label="worst normalized error")
        if not result.passed:
            stats.failure = (case, result.divergences[0])
            raise AssertionError(result.divergences[0].describe())

    try:
        conforms()
    except AssertionError:
        pass
    return stats


def run_campaign(args) -> int:
    from .cli import _array_module, reproduce_command
    impl = load_impl(args.impl)
    started = time.monotonic()
    modes = args.modes.split(",") if args.modes else None
    stats = campaign(impl, args.profile, _array_module(args.device, args.impl), args.examples, modes,
                     not args.no_per_rule_hooks, not args.no_checkpoints)
    elapsed = time.monotonic() - started
    print(f"hypothesis profile {args.profile}: {stats.examples} examples in {elapsed:.0f}s, "
          f"worst normalized error {stats.worst:.3g}, "
          f"{'1 failure' if stats.failure else 'zero alarms'}")
    if stats.failure:
        case, divergence = stats.failure
        print(f"  {divergence.describe()}\n  reproduce: {reproduce_command(args, case)}")
    if args.write:
        os.makedirs("reports", exist_ok=True)
        with open(os.path.join("reports", f"deep-{args.profile}-{args.impl}.json"), "w") as f:
            json.dump({"impl": args.impl, "profile": args.profile, "examples": stats.examples,
                       "modes": modes or "all", "per_rule_hooks": not args.no_per_rule_hooks,
                       "checkpoints": not args.no_checkpoints,
                       "seconds": round(elapsed), "worst_normalized_error": stats.worst,
                       "worst_case": repr(stats.worst_case),
                       "failure": None if not stats.failure else stats.failure[1].describe()},
                      f, indent=1)
    return 1 if stats.failure else 0
