"""Command line: run, gate, report, mutants, deep, ladder.

Exit codes: 0 conformance, 1 non-conformance (or a surviving mutant), 2 usage or internal
error.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import traceback

from . import devices, generators, report
from .adapter import load_impl
from .devices import DEVICES
from .runner import case_from_repr, run_cases

RESULTS_CACHE = os.path.join("reports", "conformance-last-run.json")


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


def _array_module(device: str, impl_name: str):
    try:
        return devices.array_module(device, impl_name)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conformance",
                                     description="Diff an optimizer implementation against the reference.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run the suite; print a summary table"),
                            ("gate", "run the suite; exit 0 on pass, 1 on non-conformance"),
                            ("report", "run the suite and write reports/")):
        p = sub.add_parser(name, help=help_text)
        _suite_options(p)
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
    p.add_argument("--jobs", type=int, default=1,
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
    p.add_argument("--write", action="store_true",
                   help="also write reports/deep-<profile>-<impl>.json")
    p = sub.add_parser("ladder", help="float64 reference against mpmath, per step")
    p.add_argument("--filter", default=None)
    p.add_argument("--write", action="store_true")
    return parser


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
    p.add_argument("--fp16-compute", default="float32", choices=("float32", "float16"),
                   help="the dtype the implementation computes in for float16 storage without a "
                        "master (float32: fast; float16: Chainer's NumPy float16 arithmetic)")


def select_cases(args) -> list:
    if args.case_repr:
        return [case_from_repr(args.case_repr)]
    cases = generators.ci_suite(args.level)
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
    base = f"python -m conformance gate --impl {args.impl} --device {args.device}"
    if getattr(args, "fp16_compute", "float32") != "float32":
        base += f" --fp16-compute {args.fp16_compute}"
    if getattr(args, "case_repr", None) or case.name == "hypothesis":
        return f"{base} --case-repr {shlex.quote(repr(case))}"
    return f"{base} --level {args.level} --case {shlex.quote(case.name)}"


def print_failure(args, result, stream=sys.stdout) -> None:
    d = result.divergences[0]
    stream.write(f"NON-CONFORMANCE in case {result.case.name}\n  {d.describe()}\n")
    if d.kind == "value":
        stream.write(f"  array {d.array} element {list(d.index)}: impl {d.impl_value!r}, "
                     f"reference {d.ref_value!r}, error {abs(d.impl_value - d.ref_value):.6g}, "
                     f"bound {d.bound:.6g}\n")
    stream.write(f"  reproduce: {reproduce_command(args, result.case)}\n")


def cmd_run(args, gate=False) -> int:
    impl = load_impl(args.impl)
    xp = _array_module(args.device, args.impl)
    cases = select_cases(args)
    results = run_cases(impl, cases, xp=xp, progress=True, fail_fast=args.fail_fast,
                        fp16_compute=args.fp16_compute, drift=not gate)
    records = [report.result_record(r) for r in results]
    print(report.summary_table(records))
    failed = [r for r in results if not r.passed]
    print(f"\n{len(results)} cases, {len(failed)} failed")
    if not gate:
        _cache(args, records)
    if failed:
        print_failure(args, failed[0])
    return 1 if failed else 0


def _meta(args) -> dict:
    meta = {"impl": args.impl, "device": args.device, "level": args.level,
            "filter": args.filter, "profile": args.profile, "fp16_compute": args.fp16_compute}
    if args.device == "gpu":
        meta["gpu"] = devices.describe("gpu")
    return meta


def _cache(args, records) -> None:
    os.makedirs("reports", exist_ok=True)
    with open(RESULTS_CACHE, "w") as f:
        json.dump({"meta": _meta(args), "results": records}, f, default=str)


def cmd_report(args) -> int:
    """Write the reports from the last `run` with the same selection, else run first."""
    records = None
    if os.path.exists(RESULTS_CACHE) and not (args.case or args.case_repr):
        with open(RESULTS_CACHE) as f:
            cached = json.load(f)
        if cached.get("meta") == _meta(args):
            records = cached["results"]
    if records is None:
        impl = load_impl(args.impl)
        results = run_cases(impl, select_cases(args), xp=_array_module(args.device, args.impl),
                            progress=True, fp16_compute=args.fp16_compute, drift=True)
        records = [report.result_record(r) for r in results]
    for path in report.write_reports(records, _meta(args)):
        print("wrote", path)
    return 0 if all(r["passed"] for r in records) else 1


def cmd_mutants(args) -> int:
    from .mutants import run_catalog
    try:
        return run_catalog(level=args.level, only=args.only, write=args.write,
                           reuse_baseline=args.reuse_baseline, device=args.device, kind=args.kind,
                           jobs=args.jobs, name_filter=args.filter, baseline_from=args.baseline_from)
    except (ValueError, KeyError, OSError, devices.DeviceError) as exc:
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
        return 2
