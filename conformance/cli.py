"""Command line: run, gate, report, mutants, deep, ladder.

Exit codes: 0 conformance, 1 non-conformance (or a surviving mutant), 2 usage or internal
error.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback

from . import generators, outputs, report
from .diagnosis import failure_text
from .diagnosis import reproduce_command as _reproduce_command
from .parallel import run_suite, usable_cores
from .runner import case_from_repr
from .target import DEVICES, FP16_COMPUTE, Target, UsageError, describe_device


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conformance",
                                     description="Diff an optimizer implementation against the reference.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run the suite; print a summary table"),
                            ("gate", "run the suite; exit 0 on pass, 1 on non-conformance")):
        p = sub.add_parser(name, help=help_text)
        _suite_options(p)
        p.add_argument("--junit-xml", default=None, metavar="PATH",
                       help="also write JUnit XML: one testcase per case")
        p.add_argument("--json", default=None, metavar="PATH",
                       help="also write the summary, every failure with its reproduce line and "
                            "every case's record as JSON (`report --results` reads it)")
    p = sub.add_parser("report", help="write reports/ from a run (--results) or run the suite first")
    _suite_options(p)
    p.add_argument("--results", default=None, metavar="PATH",
                   help="the JSON a `run --json PATH` wrote: write the reports from it, without "
                        "running anything (the selection options are then that run's)")
    p = sub.add_parser("mutants", help="run the suite against every planted bug")
    p.add_argument("--level", default="ci", choices=sorted(generators.LEVELS))
    p.add_argument("--only", default=None, help="comma-separated mutant names")
    p.add_argument("--write", action="store_true", help="also write reports/mutants.md/json")
    p.add_argument("--reuse-baseline", action="store_true",
                   help="reuse the correct fast's passing cases from the last run (same level)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="run the mutants whose planted code runs on this device, there")
    p.add_argument("--filter", default=None, help="only cases whose name contains this")
    p.add_argument("--baseline-from", default=None, metavar="JSON",
                   help="take the baseline from this conformance report of fast (same device and "
                        "level) instead of running the suite first")
    p.add_argument("--kind", default=None, choices=("kernel", "python"),
                   help="only kernel-source edits or only host-side patches")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="mutants checked at once (each in its own process)")
    p = sub.add_parser("deep", help="hypothesis campaign against an implementation")
    p.add_argument("--impl", default="fast")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--profile", default="ci", choices=sorted(generators.PROFILE_SETTINGS))
    p.add_argument("--examples", type=int, default=None, help="override max_examples")
    p.add_argument("--modes", default=None, help="comma-separated dtype modes (default: all)")
    p.add_argument("--no-per-rule-hooks", action="store_true",
                   help="only optimizer-level hooks")
    p.add_argument("--no-checkpoints", action="store_true", help="no save/load points")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="split the examples over N worker processes, each an independent "
                        "unseeded hypothesis run (not with a derandomized profile)")
    p.add_argument("--seconds", type=_positive_int, default=None, metavar="S",
                   help="start no example after S seconds (the record says the run was cut)")
    p.add_argument("--write", action="store_true",
                   help="also write reports/deep-<profile>-<impl>.{json,md}")
    p = sub.add_parser("ladder", help="float64 reference against mpmath, per step")
    p.add_argument("--filter", default=None)
    p.add_argument("--write", action="store_true")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _suite_options(p) -> None:
    p.add_argument("--impl", default="fast", help="importable module exposing the public API "
                   "('chainer' for real Chainer)")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--level", default="ci", choices=sorted(generators.LEVELS))
    p.add_argument("--filter", default=None, help="only cases whose name contains this")
    p.add_argument("--profile", default=None, choices=("chainer", "fixed"),
                   help="only cases of this semantics profile")
    p.add_argument("--case", default=None, help="exactly one case of the suite, by name")
    p.add_argument("--case-repr", default=None, help="one case given by its repr")
    p.add_argument("--fail-fast", action="store_true")
    p.add_argument("--fp16-compute", default="float32", choices=FP16_COMPUTE,
                   help="the dtype the implementation computes in for float16 storage without a "
                        "master (float32: fast; float16: Chainer's NumPy float16 arithmetic)")
    p.add_argument("--jobs", type=_positive_int, default=usable_cores(), metavar="N",
                   help="worker processes (default: the usable cores, here %(default)s); the "
                        "results are the same for every N")
    p.add_argument("--require-all", action="store_true",
                   help="a case the implementation cannot run (not applicable) is a failure")
    p.add_argument("--ranks", type=_positive_int, default=1, metavar="N",
                   help="the distributed slice on N ranks: run under `mpiexec -n N` (each rank "
                        "runs every case; rank 0 prints and writes the reports); 1: the "
                        "one-process suite")


def _target(args) -> Target:
    return Target(args.impl, args.device, getattr(args, "fp16_compute", "float32"))


def select_cases(args) -> list:
    ranks = getattr(args, "ranks", 1)
    if args.case_repr:
        case = case_from_repr(args.case_repr)
        if case.ranks != ranks:
            raise UsageError(f"--case-repr: the case runs on {case.ranks} rank(s): "
                             f"{'mpiexec -n %d ... ' % case.ranks if case.ranks > 1 else ''}"
                             f"--ranks {case.ranks}")
        return [case]
    cases = generators.ci_suite(args.level, ranks=ranks)
    if args.case:
        cases = [c for c in cases if c.name == args.case]
        if not cases:
            raise UsageError(f"no case named {args.case!r} at level {args.level!r}")
    if args.filter:
        cases = [c for c in cases if args.filter in c.name]
    if args.profile:
        cases = [c for c in cases if c.profile == args.profile]
    if not cases:
        raise UsageError("no case matches the selection (--filter / --profile)")
    return cases


def reproduce_command(args, case) -> str:
    """The reproduce line for parsed arguments (`deep`'s have no --level: its cases are
    given by repr)."""
    return _reproduce_command(_target(args), getattr(args, "level", "ci"), case,
                              by_repr=bool(getattr(args, "case_repr", None)))


def print_failure(args, result, stream=sys.stdout) -> None:
    stream.write(failure_text(result, reproduce_command(args, result.case)))


def _world(args):
    """The ranks of a `--ranks N` run (conformance.ranks.World), or None for one process;
    refuses a one-process run started under mpiexec with several ranks."""
    if args.ranks == 1:
        for variable in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
            if int(os.environ.get(variable, "1") or 1) > 1:
                raise UsageError(f"started on {os.environ[variable]} MPI ranks without --ranks: "
                                 f"pass --ranks {os.environ[variable]} for the distributed slice")
        return None
    if args.device != "cpu":
        raise UsageError("--ranks runs on the CPU only (the 'mpi' communicator exchanges NumPy "
                         "arrays)")
    from .ranks import World
    return World(args.ranks)


def _run_distributed(args, world, cases, gate) -> list:
    """Every rank runs every case, in this process; results identical on every rank."""
    impl, xp = _target(args).load()
    from .runner import run_cases
    return run_cases(impl, cases, xp=xp, progress=world.rank == 0, fail_fast=args.fail_fast,
                     fp16_compute=args.fp16_compute, drift=not gate,
                     require_all=args.require_all, world=world)


def cmd_run(args, gate=False) -> int:
    target = _target(args)
    world = _world(args)
    cases = select_cases(args)
    if world is not None:
        results = _run_distributed(args, world, cases, gate)
        failed = [r for r in results if r.failed(args.require_all)]
        code = 1 if failed else 0
        codes = world.allgather(code)
        if world.rank == 0:
            _report_run(args, results, gate)
            if len(set(codes)) != 1:
                print(f"error: the ranks reached different verdicts (exit codes {codes})")
        return max(codes) if len(set(codes)) == 1 else 2
    results = run_suite(target, cases, jobs=args.jobs, progress=True, fail_fast=args.fail_fast,
                        drift=not gate, require_all=args.require_all)
    return _report_run(args, results, gate)


def _report_run(args, results, gate) -> int:
    records = [report.result_record(r) for r in results]
    print(report.summary_table(records))
    print(f"\n{report.count_line(records, args.require_all)}")
    for line in report.not_applicable_lines(records):
        print(line)
    _write_outputs(args, results, gate)
    failed = [r for r in results if r.failed(args.require_all)]
    if failed:
        print_failure(args, failed[0])
    return 1 if failed else 0


def _write_outputs(args, results, gate) -> None:
    reproduce = functools.partial(reproduce_command, args)
    if args.json:
        payload = outputs.json_payload(results, _meta(args), reproduce, args.require_all)
        payload["drift_measured"] = not gate
        outputs.write_json(args.json, payload)
    if args.junit_xml:
        tree = outputs.junit_tree(results, f"conformance.{args.impl}", reproduce, args.require_all)
        outputs.write_junit(args.junit_xml, tree)


def _meta(args) -> dict:
    meta = {"impl": args.impl, "device": args.device, "level": args.level,
            "filter": args.filter, "profile": args.profile, "fp16_compute": args.fp16_compute}
    if getattr(args, "ranks", 1) > 1:
        meta["ranks"] = args.ranks
    if args.device == "gpu":
        meta["gpu"] = describe_device("gpu")
    return meta


def cmd_report(args) -> int:
    """Write the reports from a saved run (--results), else run the suite first."""
    if args.results:
        meta, records = _saved_run(args.results)
    else:
        world = _world(args)
        if world is not None:
            results = _run_distributed(args, world, select_cases(args), gate=False)
            if world.rank != 0:  # rank 0 writes; every rank has the same results
                return 1 if any(r.failed(args.require_all) for r in results) else 0
        else:
            results = run_suite(_target(args), select_cases(args), jobs=args.jobs,
                                progress=True, drift=True, require_all=args.require_all)
        meta, records = _meta(args), [report.result_record(r) for r in results]
    for path in report.write_reports(records, meta):
        print("wrote", path)
    print(report.count_line(records, args.require_all))
    return 1 if any(report.failed(r, args.require_all) for r in records) else 0


def _saved_run(path: str) -> tuple:
    """(meta, records) of the file a `run --json PATH` wrote."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--results {path}: cannot read it ({exc})") from exc
    if not isinstance(saved, dict) or not {"meta", "results"} <= saved.keys():
        raise UsageError(f"--results {path}: not a file written by `run --json`")
    if not saved.get("drift_measured", False):
        raise UsageError(f"--results {path} was written by `gate`, which does not measure "
                         f"drift: write it with `run --json`")
    return saved["meta"], saved["results"]


def cmd_mutants(args) -> int:
    from .mutants import run_catalog
    try:
        return run_catalog(level=args.level, only=args.only, write=args.write,
                           reuse_baseline=args.reuse_baseline, device=args.device, kind=args.kind,
                           jobs=args.jobs, name_filter=args.filter, baseline_from=args.baseline_from)
    except (ValueError, KeyError, OSError) as exc:
        raise UsageError(str(exc)) from exc


def cmd_deep(args) -> int:
    from .campaign import run_campaign
    return run_campaign(args)


def cmd_ladder(args) -> int:
    from .compare import ladder
    cases = [c for c in generators.ci_suite("ci") if c.dtype_mode == "float64"
             and c.name.startswith(("matrix/", "variant/", "long/"))
             and (args.filter is None or args.filter in c.name)]
    worst, failures = 0.0, []
    for case in cases:
        r = ladder(case)
        worst = max(worst, r.worst)
        if r.failure:
            failures.append(f"{case.name}: {r.failure}")
    print(f"ladder: {len(cases)} float64 cases against mpmath(dps={50}); worst normalized "
          f"error {worst:.3g}; failures {len(failures)}")
    for line in failures[:20]:
        print("  ", line)
    if args.write:
        os.makedirs("reports", exist_ok=True)
        with open(os.path.join("reports", "ladder.json"), "w") as f:
            json.dump({"cases": len(cases), "worst": worst, "failures": failures}, f, indent=1)
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "gate"):
            return cmd_run(args, gate=args.command == "gate")
        if args.command == "report":
            return cmd_report(args)
        return {"mutants": cmd_mutants, "deep": cmd_deep, "ladder": cmd_ladder}[args.command](args)
    except (UsageError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # an internal error of the harness is not a verdict
        traceback.print_exc()
        from .ranks import abort_if_distributed
        abort_if_distributed(2)  # the other ranks may wait in a collective this one left
        return 2
