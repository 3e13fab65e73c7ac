"""Command line: run, gate, report, show, mutants, deep, ladder, migrate.

Exit codes (EXIT_CODES, printed by each subcommand's --help; docs/conformance.md lists them):
0 conformance, 1 non-conformance (or a surviving mutant, or a run that checked nothing),
2 usage or internal error.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback

from . import generators, migrate, options, outputs, report
from .diagnosis import failure_text
from .diagnosis import reproduce_command as _reproduce_command
from .parallel import run_suite, usable_cores
from .target import DEVICES, Target, UsageError, describe_device

_SUITE_EXIT = (
    (0, "every selected case that ran conforms, and at least one case ran"),
    (1, "a case diverged, a case the run requires could not run (--optimizers, "
        "--require-all), or no case ran (every selected case was not applicable)"),
    (2, "a usage error (an option, a module that cannot be imported, an output that cannot "
        "be written, no case selected) or an error of the harness itself"))
#: Each subcommand's exit statuses (its --help prints them; docs/conformance.md holds the
#: table `exit_codes_markdown` makes of them).
EXIT_CODES = {
    "run": _SUITE_EXIT,
    "gate": _SUITE_EXIT,
    "report": ((0, "as run: the verdict of the run it reports (with --results, the saved "
                   "run's)"),
               (1, "as run"),
               (2, "as run, and a --results file that cannot be used")),
    "show": ((0, "the case was printed"), (2, "no such case, or a usage error")),
    "mutants": ((0, "every mutant was detected"),
                (1, "a mutant survived (or did not build)"),
                (2, "a usage or internal error")),
    "deep": ((0, "no alarm"), (1, "a counterexample, printed with its reproduce line"),
             (2, "a usage or internal error")),
    "ladder": ((0, "the float64 reference agrees with mpmath on every case"),
               (1, "a case does not"), (2, "a usage or internal error")),
    "migrate": ((0, "the report was written (it classes each port; it is not a verdict)"),
                (2, "a usage or internal error")),
}


def _exit_epilog(name: str) -> str:
    import textwrap
    lines = ["exit status:"]
    for code, meaning in EXIT_CODES[name]:
        lines += textwrap.wrap(meaning, 76, initial_indent=f"  {code}  ", subsequent_indent="     ")
    return "\n".join(lines)


def exit_codes_markdown() -> str:
    """The table of every subcommand's exit statuses, as docs/conformance.md shows it."""
    lines = ["| subcommand | exit status |", "| --- | --- |"]
    for name, codes in EXIT_CODES.items():
        lines.append(f"| `{name}` | " + "; ".join(f"{code}: {meaning}" for code, meaning in codes)
                     + " |")
    return "\n".join(lines)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each option's default (where it has one) and keeps the epilog's lines."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows the defaults; its subcommands' parsers too (the
    subparsers take the parser's class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _subcommand(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text,
                          epilog=_exit_epilog(name) if name in EXIT_CODES else None)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m conformance",
                    description="Diff an optimizer implementation against the reference.",
                    epilog="exit status: 0 conformance, 1 non-conformance, 2 usage or internal "
                           "error;\neach subcommand's --help says exactly when.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run the suite (with the free-running drift); print a summary"),
                            ("gate", "run the suite; exit 0 on conformance, 1 on non-conformance")):
        p = _subcommand(sub, name, help_text)
        options.add_arguments(p)
        p.add_argument("--junit-xml", default=None, metavar="PATH",
                       help="also write JUnit XML: one testcase per case (the folder is created)")
        p.add_argument("--json", default=None, metavar="PATH",
                       help="also write the summary, every failure with its reproduce line and "
                            "every case's record as JSON (`report --results` reads it; the "
                            "folder is created)")
    p = _subcommand(sub, "report", "write the reports (JSON, Markdown, plots) from a run "
                    "(--results) or run the suite first")
    options.add_arguments(p)
    p.add_argument("--results", default=None, metavar="PATH",
                   help="the JSON a `run --json PATH` wrote: write the reports from it, without "
                        "running anything (the selection options are then that run's)")
    p.add_argument("--out", default="reports", metavar="DIR",
                   help="the folder the reports are written into (created; files of the same "
                        "names there are replaced)")
    p = _subcommand(sub, "show", "print a case: its hyperparameters, hooks, loss scaling, "
                    "parameters and the gradients each step hands the implementation")
    p.add_argument("case", nargs="?", default=None, metavar="CASE",
                   help="the case's name (as a FAILED line or a reproduce line prints it)")
    p.add_argument("--level", default="ci", choices=sorted(generators.LEVELS),
                   help="the suite level the case belongs to")
    p.add_argument("--case-repr", default=None, metavar="REPR",
                   help="a case given by its repr instead of a name")
    p.add_argument("--ranks", type=options.positive_int, default=None, metavar="N",
                   help="look the case up in the distributed slice on N ranks (default: from a "
                        "name starting ranks<N>/)")
    p = _subcommand(sub, "mutants", "run the suite against every planted bug")
    p.add_argument("--level", default="ci", choices=sorted(generators.LEVELS),
                   help="the suite level the mutants run against")
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
    p.add_argument("--jobs", type=options.positive_int, default=1,
                   help="mutants checked at once (each in its own process)")
    p = _subcommand(sub, "deep", "hypothesis campaign against an implementation")
    p.add_argument("--impl", default="fast", help="the implementation module")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where the arrays live")
    p.add_argument("--profile", default="ci", choices=sorted(generators.PROFILE_SETTINGS),
                   help="hypothesis settings: ci (derandomized, small), dev, deep (10,000 examples)")
    p.add_argument("--examples", type=int, default=None, help="override max_examples")
    p.add_argument("--modes", default=None, help="comma-separated dtype modes (default: all)")
    p.add_argument("--optimizers", type=options.optimizer_names, default=None, metavar="NAMES",
                   help="only these optimizers (comma-separated, e.g. SMORMS3,MSVAG; default: "
                        "all); --write then names them in the report's file name")
    p.add_argument("--no-per-rule-hooks", action="store_true",
                   help="only optimizer-level hooks")
    p.add_argument("--no-checkpoints", action="store_true", help="no save/load points")
    p.add_argument("--jobs", type=options.positive_int, default=1, metavar="N",
                   help="split the examples over N worker processes, each an independent "
                        "unseeded hypothesis run (not with a derandomized profile)")
    p.add_argument("--seconds", type=options.positive_int, default=None, metavar="S",
                   help="start no example after S seconds (the record says the run was cut)")
    p.add_argument("--write", action="store_true",
                   help="also write reports/deep-<profile>-<impl>.{json,md}")
    migrate.add_parser(sub, options.positive_int, usable_cores(), _exit_epilog("migrate"))
    p = _subcommand(sub, "ladder", "float64 reference against mpmath, per step")
    p.add_argument("--filter", default=None, help="only cases whose name contains this")
    p.add_argument("--write", action="store_true", help="also write reports/ladder.json")
    return parser


def _target(args) -> Target:
    return Target(args.impl, args.device, getattr(args, "fp16_compute", "float32"), getattr(args, "params", "impl"))


def reproduce_command(args, case) -> str:
    """The reproduce line for parsed arguments (`deep`'s have no --level: its cases are
    given by repr)."""
    return _reproduce_command(args, case, by_repr=bool(getattr(args, "case_repr", None)))


def print_failure(args, result, stream=sys.stdout) -> None:
    stream.write(failure_text(result, reproduce_command(args, result.case)))


def _progress(args) -> bool:
    """The progress bar: on a terminal only, and not with --quiet."""
    return not args.quiet and sys.stderr.isatty()


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
    return run_cases(impl, cases, xp=xp, progress=world.rank == 0 and _progress(args),
                     fail_fast=args.fail_fast, fp16_compute=args.fp16_compute, drift=not gate,
                     require_all=_required(args), world=world, params=args.params)


def _required(args) -> bool:
    return options.required_by(args) is not None


def _check_outputs(args) -> None:
    """Refuse, before anything runs, an output that cannot be written (its folder is made)."""
    outputs.check_writable("--json", getattr(args, "json", None))
    outputs.check_writable("--junit-xml", getattr(args, "junit_xml", None))
    if getattr(args, "out", None):
        outputs.check_folder("--out", args.out)


def cmd_run(args, gate=False) -> int:
    target = _target(args)
    world = _world(args)
    cases = options.select_cases(args)
    _check_outputs(args)
    if world is not None:
        results = _run_distributed(args, world, cases, gate)
        code = 1 if report.verdict_failed([report.result_record(r) for r in results],
                                          _required(args)) else 0
        codes = world.allgather(code)
        if world.rank == 0:
            _report_run(args, results, gate)
            if len(set(codes)) != 1:
                print(f"error: the ranks reached different verdicts (exit codes {codes})")
        return max(codes) if len(set(codes)) == 1 else 2
    results = run_suite(target, cases, jobs=args.jobs, progress=_progress(args),
                        fail_fast=args.fail_fast, drift=not gate, require_all=_required(args))
    return _report_run(args, results, gate)


def _print_summary(args, records) -> None:
    """The table (unless --quiet) with its legend, the count line, what ran and what did
    not (grouped by reason)."""
    required_by = options.required_by(args)
    if not args.quiet:
        print(report.summary_table(records))
        print("\n".join(report.legend_lines()) + "\n")
    print(report.count_line(records, required_by))
    for line in report.ran_lines(records) + report.not_run_lines(records, required_by):
        print(line)


def _report_run(args, results, gate) -> int:
    records = [report.result_record(r) for r in results]
    _print_summary(args, records)
    _write_outputs(args, results, gate)
    failed = [r for r in results if r.failed(_required(args))]
    if failed:
        print_failure(args, failed[0])
    if report.nothing_ran(records):
        print("FAIL: no case ran: every selected case needs what the implementation lacks")
    return 1 if report.verdict_failed(records, _required(args)) else 0


def _write_outputs(args, results, gate) -> None:
    reproduce = functools.partial(reproduce_command, args)
    if args.json:
        payload = outputs.json_payload(results, _meta(args), reproduce, _required(args))
        payload["drift_measured"] = not gate
        outputs.write_json(args.json, payload)
    if args.junit_xml:
        tree = outputs.junit_tree(results, f"conformance.{args.impl}", reproduce, _required(args))
        outputs.write_junit(args.junit_xml, tree)


def _meta(args) -> dict:
    meta = {"impl": args.impl, "device": args.device, "level": args.level,
            "filter": args.filter, "profile": args.profile,
            "optimizers": None if args.optimizers is None else list(args.optimizers),
            "fp16_compute": args.fp16_compute, "require_all": args.require_all,
            "params": args.params}
    if getattr(args, "ranks", 1) > 1:
        meta["ranks"] = args.ranks
    if args.device == "gpu":
        meta["gpu"] = describe_device("gpu")
    return meta


def cmd_report(args) -> int:
    """Write the reports from a saved run (--results), else run the suite first."""
    _check_outputs(args)
    required_by = options.required_by(args)
    if args.results:
        meta, records = _saved_run(args.results)
        if meta.get("require_all") or meta.get("optimizers"):
            required_by = "--optimizers" if meta.get("optimizers") else "--require-all"
    else:
        world = _world(args)
        if world is not None:
            results = _run_distributed(args, world, options.select_cases(args), gate=False)
            if world.rank != 0:  # rank 0 writes; every rank has the same results
                records = [report.result_record(r) for r in results]
                return 1 if report.verdict_failed(records, required_by is not None) else 0
        else:
            results = run_suite(_target(args), options.select_cases(args), jobs=args.jobs,
                                progress=_progress(args), drift=True,
                                require_all=_required(args))
        meta, records = _meta(args), [report.result_record(r) for r in results]
    if meta.get("device", "cpu") == "cpu" and meta.get("ranks", 1) == 1 and not report.can_plot():
        print("warning: no plots written: matplotlib is not installed (the project's `plot` "
              "extra: pip install '<wheel or checkout>[plot]', or pip install matplotlib)",
              file=sys.stderr)
    for path in report.write_reports(records, meta, args.out, required_by):
        print("wrote", path)
    print(report.count_line(records, required_by))
    for line in report.ran_lines(records) + report.not_run_lines(records, required_by):
        print(line)
    return 1 if report.verdict_failed(records, required_by is not None) else 0


def _saved_run(path: str) -> tuple:
    """(meta, records) of the file a `run --json PATH` wrote."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--results {path}: cannot read it ({exc})") from exc
    if not isinstance(saved, dict) or not {"meta", "results"} <= saved.keys():
        raise UsageError(f"--results {path}: not a file written by `run --json`")
    if any("status" not in record for record in saved["results"]):
        raise UsageError(f"--results {path}: its records have no status (written by an earlier "
                         f"version): write it again with `run --json`")
    if not saved.get("drift_measured", False):
        raise UsageError(f"--results {path} was written by `gate`, which does not measure "
                         f"drift: write it with `run --json`")
    return saved["meta"], saved["results"]


def cmd_show(args) -> int:
    from .show import find_case, show_case
    sys.stdout.write(show_case(find_case(args)))
    return 0


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
    from .compare import LADDER_DPS, ladder
    cases = [c for c in generators.ci_suite("ci") if c.dtype_mode == "float64"
             and c.name.startswith(("matrix/", "variant/", "long/"))
             and (args.filter is None or args.filter in c.name)]
    worst, failures = 0.0, []
    for case in cases:
        r = ladder(case)
        worst = max(worst, r.worst)
        if r.failure:
            failures.append(f"{case.name}: {r.failure}")
    print(f"ladder: {len(cases)} float64 cases against mpmath(dps={LADDER_DPS}); worst normalized "
          f"error {worst:.3g}; failures {len(failures)}")
    for line in failures[:20]:
        print("  ", line)
    if args.write:
        os.makedirs("reports", exist_ok=True)
        with open(os.path.join("reports", "ladder.json"), "w") as f:
            json.dump({"cases": len(cases), "worst": worst, "failures": failures}, f, indent=1)
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "gate"):
            return cmd_run(args, gate=args.command == "gate")
        if args.command == "report":
            return cmd_report(args)
        return {"show": cmd_show, "mutants": cmd_mutants, "deep": cmd_deep, "ladder": cmd_ladder,
                "migrate": migrate.command}[args.command](args)
    except (UsageError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # an internal error of the harness is not a verdict
        traceback.print_exc()
        from .ranks import abort_if_distributed
        abort_if_distributed(2)  # the other ranks may wait in a collective this one left
        return 2
