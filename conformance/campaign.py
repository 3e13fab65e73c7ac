"""The hypothesis campaign: random cases against an implementation, zero alarms expected.

Profiles (generators.PROFILE_SETTINGS): `ci` (derandomized, small), `dev`, `deep` (10,000
examples). Every profile steers the search with `target()` on the worst normalized error, so
the examples that come closest to a bound are explored further.

`--jobs N` splits the examples over N worker processes (started with `spawn`, as
conformance.parallel's), each an independent unseeded hypothesis run of its share; their
statistics are merged. The jobs split the grid of dtype modes x profiles between them
(`job_grids`), so that the search's steering towards large errors, which favours some modes,
cannot starve the others: with as many jobs as cells (8 for every mode and profile) or a
multiple, every cell gets the same number of examples. The first failure in any job stops the
others (they return what they ran); that job shrinks its failing case as a one-process run
would.
"""
from __future__ import annotations

import collections
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
import warnings

import hypothesis
from hypothesis import given, target
from hypothesis.reporting import with_reporter

from . import generators
from .compare import check_case
from .target import Target, UsageError

#: A job prints a progress line every this many examples.
PROGRESS_EVERY = 1000


class CampaignStats:
    """What a campaign (or one job of it) ran: the examples, the CPU seconds they took, the
    worst normalized error and its case, the first failure (case, divergence), and how many
    examples each dtype mode, profile and optimizer had."""

    def __init__(self):
        self.examples = 0
        self.cpu_seconds = 0.0
        self.worst = 0.0
        self.worst_case = None
        self.failure = None
        self.out_of_time = False
        self.by_mode = collections.Counter()
        self.by_profile = collections.Counter()
        self.by_optimizer = collections.Counter()

    def record(self, case, result) -> float:
        """Count one example; returns its worst normalized error."""
        self.examples += 1
        self.by_mode[case.dtype_mode] += 1
        self.by_profile[case.profile] += 1
        self.by_optimizer[case.optimizer] += 1
        worst = max(result.step_errors, default=0.0)
        if worst > self.worst:
            self.worst, self.worst_case = worst, case
        return worst

    def merge(self, other: "CampaignStats") -> None:
        """Add another job's statistics (the first failure merged in is kept)."""
        self.examples += other.examples
        self.cpu_seconds += other.cpu_seconds
        if other.worst > self.worst:
            self.worst, self.worst_case = other.worst, other.worst_case
        if self.failure is None:
            self.failure = other.failure
        self.out_of_time = self.out_of_time or other.out_of_time
        self.by_mode.update(other.by_mode)
        self.by_profile.update(other.by_profile)
        self.by_optimizer.update(other.by_optimizer)


class _Stopped(BaseException):
    """Another job failed: this one ends at once (hypothesis re-raises a BaseException that
    is not an Exception without shrinking it)."""


def campaign(impl, profile: str, xp, examples: int | None = None, modes=None,
             per_rule_hooks=True, checkpoints=True, stop=None, progress=None,
             deadline=None, profiles=generators.PROFILES,
             optimizers=generators.OPTIMIZERS) -> CampaignStats:
    """Run the campaign in this process; stats.failure holds the (shrunk) failing case and
    divergence. `stop` (an Event): set by this run at its first failure, and when another
    job set it this run ends. `progress`: a label; with one, a line goes to stderr every
    PROGRESS_EVERY examples. `deadline` (a time.time() value): no example starts after it
    (stats.out_of_time tells). `optimizers`: the optimizers the cases draw from."""
    stats = CampaignStats()
    settings = settings_for(profile, examples)
    strategy = generators.cases(modes=tuple(modes or generators.DTYPE_MODES),
                                per_rule_hooks=per_rule_hooks, checkpoints=checkpoints,
                                profiles=tuple(profiles), optimizers=tuple(optimizers))

    @settings
    @given(strategy)
    def conforms(case):
        if stop is not None and stop.is_set() and stats.failure is None:
            raise _Stopped()
        if deadline is not None and time.time() > deadline and stats.failure is None:
            stats.out_of_time = True
            raise _Stopped()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = check_case(impl, case, xp=xp)
        worst = stats.record(case, result)
        if progress and stats.examples % PROGRESS_EVERY == 0:
            print(f"{progress}: {stats.examples} examples, worst normalized error "
                  f"{stats.worst:.3g}", file=sys.stderr, flush=True)
        target(min(worst, 1e6) if math.isfinite(worst) else 1e6, label="worst normalized error")
        if not result.passed:
            stats.failure = (case, result.divergences[0])
            if stop is not None:
                stop.set()
            raise AssertionError(result.divergences[0].describe())

    started = time.process_time()
    try:
        with with_reporter(lambda text: None):  # the failure is printed by run_campaign
            conforms()
    except (AssertionError, _Stopped):
        pass
    stats.cpu_seconds = time.process_time() - started
    return stats


def settings_for(profile: str, examples: int | None):
    """The hypothesis settings of `profile`, with `examples` as max_examples when given."""
    settings = generators.settings_profile(profile)
    if examples is not None:
        settings = type(settings)(settings, max_examples=examples)
    return settings


def shares(examples: int, jobs: int) -> list:
    """`examples` split over `jobs` as evenly as possible (the first jobs take the rest)."""
    return [examples // jobs + (1 if k < examples % jobs else 0) for k in range(jobs)]


def job_grids(modes, profiles, jobs: int) -> list:
    """Per job, the (dtype modes, profiles) it draws from: the cells of the modes x profiles
    grid dealt to the jobs in turn, each job keeping a product of modes and profiles (a job
    that gets no whole product draws from all). With jobs a multiple of the cells, each cell
    is one job's alone, or several jobs'."""
    cells = [(m, p) for m in modes for p in profiles]
    if jobs % len(cells) == 0:
        return [((m,), (p,)) for m, p in (cells[k % len(cells)] for k in range(jobs))]
    if jobs % len(modes) == 0:
        return [((modes[k % len(modes)],), tuple(profiles)) for k in range(jobs)]
    return [(tuple(modes), tuple(profiles))] * jobs


def run_jobs(target: Target, profile: str, examples: int, jobs: int, modes=None,
             per_rule_hooks=True, checkpoints=True, deadline=None,
             optimizers=generators.OPTIMIZERS) -> CampaignStats:
    """The campaign split over `jobs` worker processes, merged (one job: in this process)."""
    modes = tuple(modes or generators.DTYPE_MODES)
    if jobs == 1:
        impl, xp = target.load()
        return campaign(impl, profile, xp, examples, modes, per_rule_hooks, checkpoints,
                        progress="job 1/1", deadline=deadline, optimizers=optimizers)
    target.load()  # a usage error is reported here, once, not by every job
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    grids = job_grids(modes, generators.PROFILES, jobs)
    tasks = [(target, profile, n, grids[k][0], per_rule_hooks, checkpoints, f"job {k + 1}/{jobs}",
              deadline, grids[k][1], optimizers) for k, n in enumerate(shares(examples, jobs))]
    stats = CampaignStats()
    with context.Pool(jobs, initializer=_start_job, initargs=(stop,)) as pool:
        for job_stats in pool.imap(_run_job, tasks):
            stats.merge(job_stats)
    return stats


_job = {}


def _start_job(stop) -> None:
    _job["stop"] = stop


def _run_job(task) -> CampaignStats:
    (target, profile, examples, modes, per_rule_hooks, checkpoints, label, deadline, profiles,
     optimizers) = task
    impl, xp = target.load()
    return campaign(impl, profile, xp, examples, modes, per_rule_hooks, checkpoints,
                    stop=_job["stop"], progress=label, deadline=deadline, profiles=profiles,
                    optimizers=optimizers)


def run_campaign(args) -> int:
    """`python -m conformance deep`: run, print the summary, write the report (--write)."""
    from .cli import reproduce_command
    settings = settings_for(args.profile, args.examples)
    if args.jobs > 1 and settings.derandomize:
        raise UsageError(f"--jobs {args.jobs}: hypothesis profile {args.profile!r} is "
                         f"derandomized, so every job would draw the same examples")
    modes = tuple(args.modes.split(",")) if args.modes else generators.DTYPE_MODES
    unknown = sorted(set(modes) - set(generators.DTYPE_MODES))
    if unknown:
        raise UsageError(f"--modes: unknown dtype modes {unknown}; expected some of "
                         f"{list(generators.DTYPE_MODES)}")
    optimizers = args.optimizers or generators.OPTIMIZERS
    commit = _commit()
    started = time.monotonic()
    deadline = None if args.seconds is None else time.time() + args.seconds
    stats = run_jobs(Target(args.impl, args.device), args.profile, settings.max_examples,
                     args.jobs, modes, not args.no_per_rule_hooks, not args.no_checkpoints,
                     deadline, optimizers)
    elapsed = time.monotonic() - started
    print(f"hypothesis profile {args.profile}: {stats.examples} examples in {elapsed:.0f}s "
          f"({args.jobs} job{'s' if args.jobs > 1 else ''}), worst normalized error "
          f"{stats.worst:.3g}, {'1 failure' if stats.failure else 'zero alarms'}"
          f"{f' (--seconds {args.seconds} ran out)' if stats.out_of_time else ''}")
    reproduce = None
    if stats.failure:
        case, divergence = stats.failure
        reproduce = reproduce_command(args, case)
        print(f"  {divergence.describe()}\n  reproduce: {reproduce}")
    if args.write:
        record = campaign_record(args, settings, modes, stats, elapsed, reproduce, commit)
        stem = os.path.join("reports", report_stem(args.profile, args.impl, args.optimizers))
        os.makedirs("reports", exist_ok=True)
        with open(stem + ".json", "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        with open(stem + ".md", "w") as f:
            f.write(campaign_markdown(record))
    return 1 if stats.failure else 0


def report_stem(profile: str, impl: str, optimizers=None) -> str:
    """The name `--write` gives a campaign's report: deep-<profile>-<impl>, followed by the
    optimizers when `--optimizers` chose some, so that a run over a few optimizers never
    replaces the record of a run over all of them."""
    return "-".join((f"deep-{profile}-{impl}",) + tuple(optimizers or ()))


def campaign_record(args, settings, modes, stats: CampaignStats, elapsed: float,
                    reproduce, commit: str) -> dict:
    """What `deep --write` records: the code, the settings, what ran, what it cost, the worst
    normalized error with its case, and the failure if any."""
    per_example = elapsed / stats.examples if stats.examples else None
    cpu_per_example = stats.cpu_seconds / stats.examples if stats.examples else None
    return {
        "impl": args.impl, "device": args.device, "commit": commit,
        "hypothesis": {"profile": args.profile, "version": hypothesis.__version__,
                       "max_examples": settings.max_examples,
                       "derandomize": settings.derandomize,
                       "database": repr(settings.database),
                       "seed": "unseeded: each job draws its own random seed"},
        "jobs": args.jobs, "usable_cores": len(os.sched_getaffinity(0)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "optimizers": list(args.optimizers or generators.OPTIMIZERS),
        "modes": list(modes), "per_rule_hooks": not args.no_per_rule_hooks,
        "checkpoints": not args.no_checkpoints,
        "examples": stats.examples, "seconds_limit": args.seconds,
        "out_of_time": stats.out_of_time,
        "examples_by_mode": dict(sorted(stats.by_mode.items())),
        "examples_by_profile": dict(sorted(stats.by_profile.items())),
        "examples_by_optimizer": dict(sorted(stats.by_optimizer.items())),
        "seconds": round(elapsed), "cpu_seconds": round(stats.cpu_seconds),
        "seconds_per_example": per_example and round(per_example, 5),
        "cpu_seconds_per_example": cpu_per_example and round(cpu_per_example, 5),
        "worst_normalized_error": stats.worst,
        "worst_case": repr(stats.worst_case),
        "failure": None if not stats.failure else {
            "divergence": stats.failure[1].describe(), "case": repr(stats.failure[0]),
            "reproduce": reproduce},
    }


def campaign_markdown(record: dict) -> str:
    """A short human-readable page of a campaign record."""
    h = record["hypothesis"]
    verdict = "**zero alarms**" if record["failure"] is None else "**1 alarm**"
    lines = [
        f"# Hypothesis campaign `{h['profile']}` against `{record['impl']}` ({record['device']})",
        "",
        f"{record['examples']:,} examples, {verdict}; worst normalized error "
        f"{record['worst_normalized_error']:.3g}"
        + (f" (stopped by `--seconds {record['seconds_limit']}` before max_examples)."
           if record["out_of_time"] else "."),
        "",
        "| what | value |", "|---|---|",
        f"| code | `{record['commit']}` |",
        f"| hypothesis | {h['version']}, profile `{h['profile']}`, max_examples "
        f"{h['max_examples']:,}, derandomize {h['derandomize']}, database `{h['database']}`, "
        f"{h['seed']} |",
        f"| jobs | {record['jobs']} on {record['usable_cores']} usable cores, "
        f"OMP_NUM_THREADS={record['omp_num_threads']} |",
        f"| dtype modes | " + ", ".join(f"{m} {n:,}" for m, n in record["examples_by_mode"].items())
        + " |",
        f"| profiles | " + ", ".join(f"{p} {n:,}" for p, n in record["examples_by_profile"].items())
        + " |",
        f"| optimizers | " + ", ".join(f"{o} {n:,}" for o, n in record["examples_by_optimizer"].items())
        + f" ({len(record['examples_by_optimizer'])} of the {len(record['optimizers'])} asked for) |",
        f"| per-rule hooks, checkpoints | {record['per_rule_hooks']}, {record['checkpoints']} |",
        f"| wall time | {record['seconds']:,} s ({record['seconds_per_example']} s per example) |",
        f"| CPU time | {record['cpu_seconds']:,} s ({record['cpu_seconds_per_example']} s per "
        f"example) |",
        "",
        f"Worst case: `{record['worst_case']}`",
    ]
    if record["failure"]:
        lines += ["", f"Failure: {record['failure']['divergence']}", "",
                  f"    {record['failure']['reproduce']}"]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    """The checked-out commit, with `+changes` when the code the campaign runs (reference,
    fast, conformance) differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "reference", "fast",
                                "conformance"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")
