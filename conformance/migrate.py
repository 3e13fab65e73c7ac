"""`python -m conformance migrate --to torch|optax`: Chainer's optimizers against a library.

For every mapping of the table (conformance.adapters.mappings), the port to use and the
naive ports, in every path of the library (torch: for-loop, foreach, fused; optax: its
jitted update), the gate's cases are run through the library's adapter
(conformance.adapters.torch / .optax), and each port gets a class:

- exact: every applicable case of the float64 and float32 modes conforms (the gate's error
  model, teacher-forced, step by step), Chainer's error cases aside;
- differs: at least one does not; the report gives the first divergence and the cases.

The cases: an optimizer's own cases without hooks (the matrix, odd and large sizes, the
variants, the special gradient streams, None gradients with disabled rules and per-rule
overrides, checkpoints, runs resumed at t = 10^3, 10^5, 10^7); a hook's cases over SGD and
MomentumSGD (the matrix, hook order, clipping at small and zero norms, per-rule LARS, the
large norms). Cases the adapter cannot run (loss scaling, fp32 masters, the `fixed` profile)
are counted with their reason.
Chainer's error cases (an eps that underflows the dtype raises ValueError) are reported
apart: whether the counterpart raises is not a matter of the arithmetic.

Beside the class, the drift of each port from the reference, free-running (no teacher
forcing), at steps 1, 10 and 100 on three gradient streams (normal x1, x1e-3, x1e-6),
float32: the largest distance of a parameter from the reference's, over the largest distance
the reference's parameters travelled from their start; `fast`'s own drift on the same case is
the floor (what float32 rounding alone gives). Writes reports/migration-<library>.{md,json}.
"""
from __future__ import annotations


import dataclasses
import importlib
import inspect
import json
import multiprocessing
import os
import platform
import warnings

import numpy as np

from . import applicability, generators
from .adapter import Driver
from .adapters import mappings as table
from .cases import Case, HookSpec, ParamSpec
from .runner import run_case
from .target import UsageError

MODES = ("float64", "float32")
#: Where a hook's cases come from: optimizers whose mappings are exact in both libraries.
HOOK_CASE_OPTIMIZERS = ("SGD", "MomentumSGD")
DRIFT_STEPS = (1, 10, 100)
DRIFT_STREAMS = (("x1", 1.0), ("x1e-3", 1e-3), ("x1e-6", 1e-6))
#: Hyperparameters of the drift cases where Chainer's defaults would hide a difference
#: (Chainer's AdamW decays nothing by default).
DRIFT_HYPERPARAMS = {"AdamW": (("weight_decay_rate", 0.01),)}
LIBRARY_PATHS = {"torch": tuple(table.TORCH_PATHS), "optax": ("jit",)}


def adapter_module(library: str):
    """conformance.adapters.<library>; a UsageError naming what to install when it is missing."""
    if library not in table.LIBRARIES:
        raise UsageError(f"--to must be one of {table.LIBRARIES}, not {library!r}")
    try:
        return importlib.import_module(f"conformance.adapters.{library}")
    except ImportError as exc:
        needs = "torch (pip install torch==2.13.0)" if library == "torch" else \
            "jax and optax (pip install jax optax)"
        raise UsageError(f"migrate --to {library} needs {needs}: {exc}") from exc


def contract(library: str, mapping: table.Mapping, path: str):
    """The adapter's contract namespace with `mapping` standing for its Chainer name and the
    table's mappings for everything else, in `path`."""
    module = adapter_module(library)
    selection = dict(table.default_selection(library), **{mapping.chainer: mapping})
    return module.contract_for(selection, path) if library == "torch" else \
        module.contract_for(selection)


# -- the cases --------------------------------------------------------------------------------
def class_cases(mapping: table.Mapping) -> list:
    """The ci cases that decide a mapping's class (see the module docstring)."""
    out = []
    for case in generators.ci_suite("ci"):
        if case.dtype_mode not in MODES or case.profile != "chainer":
            continue
        if mapping.is_hook:
            if case.optimizer in HOOK_CASE_OPTIMIZERS and \
                    mapping.chainer in {h.kind for h in case.hooks}:
                out.append(case)
        elif case.optimizer == mapping.chainer and not case.hooks:
            out.append(case)
    return out


def drift_case(chainer: str, scale: float, stream: str) -> Case:
    """A 100-step float32 case for the drift of an optimizer (or SGD with a hook)."""
    params = (ParamSpec("p0", (64,), grad_scale=scale), ParamSpec("p1", (3, 5), grad_scale=scale))
    if chainer in table.HOOKS:
        return Case(name=f"drift/SGD+{chainer}/{stream}", optimizer="SGD", params=params,
                    steps=max(DRIFT_STEPS), dtype_mode="float32", seed=3,
                    hooks=(HookSpec(chainer, generators.HOOK_ARGS[chainer]),))
    return Case(name=f"drift/{chainer}/{stream}", optimizer=chainer, params=params,
                steps=max(DRIFT_STEPS), dtype_mode="float32", seed=3,
                hyperparams=DRIFT_HYPERPARAMS.get(chainer, ()))


def drift(impl, case: Case) -> dict:
    """Free-running drift at DRIFT_STEPS: max |p - p_ref| / max |p_ref - p_ref(0)| over every
    parameter element, both sides on their own from the same start (the reference in
    float64 arithmetic); a side that raises ends the run with the exception's name."""
    import reference
    from reference.arithmetic import Float64
    impl_driver = Driver(impl, case)
    ref_driver = Driver(reference, case, optimizer_kwargs={"arithmetic": Float64()})
    start = {n: p.data.astype(np.float64) for n, p in ref_driver.params.items()}
    out = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for step in range(1, case.steps + 1):
            for side, driver in (("impl", impl_driver), ("reference", ref_driver)):
                try:
                    driver.step(step)
                except Exception as exc:  # the drift run stops at the first exception
                    out[str(step)] = f"{side} raised {type(exc).__name__}"
                    return out
            if step in DRIFT_STEPS:
                out[str(step)] = _relative_distance(impl_driver, ref_driver, start)
    return out


def _relative_distance(impl_driver, ref_driver, start) -> float:
    travelled = max((float(np.max(np.abs(p.data.astype(np.float64) - start[n]), initial=0.0))
                     for n, p in ref_driver.params.items()), default=0.0)
    distance = max((float(np.max(np.abs(impl_driver.params[n].data.astype(np.float64)
                                        - p.data.astype(np.float64)), initial=0.0))
                    for n, p in ref_driver.params.items()), default=0.0)
    if not np.isfinite(distance):
        return float("inf")
    return distance / travelled if travelled else (0.0 if distance == 0 else float("inf"))


# -- running ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    """One piece of work for a worker: a mapping in a path, on cases or on a drift case."""
    library: str
    mapping: str
    path: str
    cases: tuple = ()
    drift: Case | None = None
    floor: bool = False     # the drift of fast itself on `drift`


def _run_task(task: Task):
    if task.floor:
        import fast
        return drift(fast, task.drift)
    impl = contract(task.library, table.find(task.library, task.mapping), task.path)
    if task.drift is not None:
        return drift(impl, task.drift)
    results, unavailable = [], {}
    for case in task.cases:
        reasons = applicability.missing(impl, case)
        if case.storage_dtype not in unavailable:
            unavailable[case.storage_dtype] = probe(impl, table.find(task.library, task.mapping),
                                                    case.storage_dtype)
        if not reasons and unavailable[case.storage_dtype]:
            reasons = [unavailable[case.storage_dtype]]
        if reasons:
            results.append({"case": case.name, "not_applicable": "; ".join(reasons)})
            continue
        result = run_case(impl, case, np)
        first = result.divergences[0].describe() if result.divergences else None
        results.append({"case": case.name, "passed": result.passed, "divergence": first})
    return results


def probe(impl, mapping: table.Mapping, dtype: str) -> str | None:
    """None when the port builds and steps in `dtype`, else why not (torch's fused path lacks
    some optimizers and dtypes): one step of a 3-element parameter with the defaults."""
    param = impl.Parameter(np.ones(3, dtype=dtype), name="w")
    try:
        if mapping.is_hook:
            opt = impl.optimizers.SGD().setup({"w": param})
            opt.add_hook(getattr(impl.optimizer_hooks, mapping.chainer)(
                *generators.HOOK_ARGS[mapping.chainer]))
        else:
            opt = getattr(impl.optimizers, mapping.chainer)().setup({"w": param})
        param.grad = np.ones(3, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.update()
    except Exception as exc:  # what the library says is why the port is unavailable
        return f"unavailable in {dtype}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return None


def run_tasks(tasks: list, jobs: int) -> list:
    """Each task's result, in order, from `jobs` spawned worker processes."""
    if jobs <= 1 or len(tasks) <= 1:
        return [_run_task(t) for t in tasks]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return pool.map(_run_task, tasks, chunksize=1)


def _chunks(cases: list, size: int = 24) -> list:
    return [tuple(cases[i:i + size]) for i in range(0, len(cases), size)]


def migrate(library: str, jobs: int = 1, only: tuple = ()) -> dict:
    """Run every mapping of `library` (or those named in `only`) and return the report."""
    module = adapter_module(library)
    chosen = [m for m in table.mappings(library) if not only or m.name in only]
    if only and len(chosen) != len(set(only)):
        raise UsageError(f"unknown {library} mapping(s): "
                         f"{sorted(set(only) - {m.name for m in chosen})}")
    paths = LIBRARY_PATHS[library]
    tasks, where = [], []
    for mapping in chosen:
        cases = class_cases(mapping)
        for path in paths:
            for chunk in _chunks(cases):
                tasks.append(Task(library, mapping.name, path, cases=chunk))
                where.append(("cases", mapping.name, path))
        for stream, scale in DRIFT_STREAMS:
            tasks.append(Task(library, mapping.name, paths[0],
                              drift=drift_case(mapping.chainer, scale, stream)))
            where.append(("drift", mapping.name, stream))
    for chainer in sorted({m.chainer for m in chosen}):
        for stream, scale in DRIFT_STREAMS:
            tasks.append(Task(library, "", "", drift=drift_case(chainer, scale, stream),
                              floor=True))
            where.append(("floor", chainer, stream))
    outcomes = run_tasks(tasks, jobs)
    cases, drifts, floors = {}, {}, {}
    for (what, name, key), outcome in zip(where, outcomes):
        if what == "cases":
            cases.setdefault((name, key), []).extend(outcome)
        elif what == "drift":
            drifts.setdefault(name, {})[key] = outcome
        else:
            floors.setdefault(name, {})[key] = outcome
    entries = [_entry(library, m, paths, cases, drifts.get(m.name, {})) for m in chosen]
    names = {m.chainer for m in chosen} if only else set(table.OPTIMIZERS + table.HOOKS)
    return {
        "library": library,
        "versions": module.versions(),
        "python": platform.python_version(),
        "command": f"python -m conformance migrate --to {library}",
        "paths": list(paths),
        "modes": list(MODES),
        "drift": {"steps": list(DRIFT_STEPS), "streams": [s for s, _ in DRIFT_STREAMS],
                  "dtype": "float32"},
        "chainer": _chainer_names(entries, floors, names),
        "lacks": list(table.LACKS[library]),
    }


def _entry(library, mapping, paths, cases, drift_by_stream) -> dict:
    classes = {path: _classify(cases.get((mapping.name, path), [])) for path in paths}
    return {"name": mapping.name, "chainer": mapping.chainer, "kind": mapping.kind,
            "counterpart": mapping.counterpart, "code": mapping.code, "note": mapping.note,
            "classes": classes, "drift": drift_by_stream,
            "defaults": differing_defaults(library, mapping)}


def _classify(results: list) -> dict:
    """The class of one mapping in one path from its case results."""
    run = [r for r in results if "not_applicable" not in r]
    errors = [r for r in run if r["case"].startswith("error/")]
    numeric = [r for r in run if not r["case"].startswith("error/")]
    failed = [r for r in numeric if not r["passed"]]
    reasons = {}
    for r in results:
        if "not_applicable" in r:
            for reason in r["not_applicable"].split("; "):
                reasons[reason] = reasons.get(reason, 0) + 1
    if not numeric:
        verdict = "not available" if any("unavailable" in r for r in reasons) else "not run"
    else:
        verdict = "differs" if failed else "exact"
    out = {"class": verdict, "cases": len(numeric), "failed": len(failed),
           "failed_cases": [r["case"] for r in failed],
           "first_divergence": None if not failed else
           f"{failed[0]['case']}: {failed[0]['divergence']}",
           "not_applicable": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
           "chainer_errors_missed": [r["case"] for r in errors if not r["passed"]]}
    return out


def families(case_names: list, chainer: str) -> list:
    """The kinds of failing cases: each name without the optimizer and the dtype mode
    (`grads/Adam/float32/subnormalx1` -> `grads/subnormalx1`), in order, once each."""
    out = []
    for name in case_names:
        kind = "/".join(part for part in name.split("/")
                        if part not in (chainer, "SGD", "MomentumSGD") + MODES)
        if kind not in out:
            out.append(kind)
    return out


def differing_defaults(library: str, mapping: table.Mapping) -> list:
    """The counterpart arguments whose default differs from Chainer's for the same quantity."""
    if not mapping.defaults:
        return []
    from .adapters.counterpart import chainer_defaults
    chainer = chainer_defaults(mapping.chainer)
    target = importlib.import_module(mapping.counterpart.rsplit(".", 1)[0])
    signature = inspect.signature(getattr(target, mapping.counterpart.rsplit(".", 1)[1]))
    out = []
    for argument, names in mapping.defaults:
        parameter = signature.parameters.get(argument)
        theirs = "required" if parameter is None or parameter.default is parameter.empty \
            else parameter.default
        values = tuple(chainer[n] for n in names.split(","))
        ours = values[0] if len(values) == 1 else values
        if theirs != ours and not (isinstance(theirs, tuple) and tuple(theirs) == ours):
            out.append({"argument": argument, library: repr(theirs),
                        "chainer": f"{names}={ours!r}"})
    return out


def _chainer_names(entries, floors, names) -> list:
    """One record per Chainer optimizer and hook in `names`: its ports, the floor, or no
    counterpart."""
    out = []
    for chainer in (n for n in table.OPTIMIZERS + table.HOOKS if n in names):
        ports = [e for e in entries if e["chainer"] == chainer]
        record = {"chainer": chainer, "kind": "hook" if chainer in table.HOOKS else "optimizer",
                  "ports": ports, "floor": floors.get(chainer, {})}
        if not ports:
            record["no_counterpart"] = table.NO_COUNTERPART.get(chainer, "no port in the table")
        elif not any(p["kind"] == "mapping" for p in ports):
            record["no_counterpart"] = "no exact port: only the naive one below"
        out.append(record)
    return out


# -- writing ----------------------------------------------------------------------------------
def write(report: dict, directory: str = "reports") -> list:
    """reports/migration-<library>.json and .md; returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"migration-{report['library']}")
    with open(base + ".json", "w") as f:
        json.dump(report, f, indent=1, sort_keys=False)
        f.write("\n")
    with open(base + ".md", "w") as f:
        f.write(markdown(report))
    return [base + ".json", base + ".md"]


def _drift_cell(values: dict) -> str:
    if not values:
        return "—"
    return " / ".join(v if isinstance(v, str) else f"{v:.2g}" for v in
                      (values.get(str(s), "—") for s in DRIFT_STEPS))


def _same_outcome(classes: dict, paths) -> list:
    """The paths grouped by identical outcome (class, counts, divergences), in order."""
    groups = []
    for path in paths:
        for group in groups:
            if classes[group[0]] == classes[path]:
                group.append(path)
                break
        else:
            groups.append([path])
    return groups


def markdown(report: dict) -> str:
    """The report as Markdown (see migrate's module docstring for what each figure is)."""
    lib, paths = report["library"], report["paths"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines = [f"# Migrating from Chainer 7.8.1 to {lib}", "",
             f"Written by `{report['command']}` ({versions}, Python {report['python']}). A "
             f"library upgrade can change a class: these hold for these versions.", "",
             "Each port is run through the gate's cases in the float64 and float32 modes "
             "(teacher-forced, every element within the error model of docs/conformance.md): "
             "**exact** when every applicable case conforms, **differs** otherwise, with the "
             "first divergence. Drift: free-running, float32, 100 steps, the largest distance "
             "of a parameter from the reference's over the largest distance the reference's "
             "parameters travelled, at steps 1 / 10 / 100, on normal gradients x1, x1e-3 and "
             "x1e-6; `fast`'s drift on the same run is the floor float32 rounding gives. "
             "docs/migration.md says how to use this.", "",
             "## Summary", "",
             "| Chainer | port | counterpart | " + " | ".join(paths) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in paths) + " |"]
    for record in report["chainer"]:
        if not record["ports"]:
            lines.append(f"| {record['chainer']} | — | {record['no_counterpart']} | "
                         + " | ".join("—" for _ in paths) + " |")
        for port in record["ports"]:
            cells = []
            for path in paths:
                c = port["classes"][path]
                kinds = families(c["failed_cases"], record["chainer"])
                cells.append(c["class"] if c["class"] != "differs" else
                             f"**differs** ({c['failed']}/{c['cases']}: {', '.join(kinds[:2])}"
                             f"{', ...' if len(kinds) > 2 else ''})")
            label = port["name"] + (" (naive)" if port["kind"] == "naive" else "")
            lines.append(f"| {record['chainer']} | {label} | `{port['counterpart']}` | "
                         + " | ".join(cells) + " |")
    lines += ["", f"## What {lib} lacks", ""] + [f"- {item}" for item in report["lacks"]]
    for record in report["chainer"]:
        lines += ["", f"## {record['chainer']}", ""]
        if record.get("no_counterpart"):
            lines += [record["no_counterpart"] + ".", ""]
        if not record["ports"]:
            continue
        lines += ["| port | drift x1 | drift x1e-3 | drift x1e-6 |", "| --- | --- | --- | --- |"]
        for port in record["ports"]:
            lines.append(f"| {port['name']} | " + " | ".join(
                _drift_cell(port["drift"].get(s, {})) for s in report["drift"]["streams"]) + " |")
        lines.append("| `fast` (floor) | " + " | ".join(
            _drift_cell(record["floor"].get(s, {})) for s in report["drift"]["streams"]) + " |")
        for port in record["ports"]:
            kind = "naive port" if port["kind"] == "naive" else "mapping"
            lines += ["", f"### {port['name']} ({kind})", "", "```python", port["code"], "```", ""]
            if port["note"]:
                lines += [port["note"], ""]
            for group in _same_outcome(port["classes"], paths):
                c = port["classes"][group[0]]
                if c["class"] == "not available":
                    reason = next(r for r in c["not_applicable"] if "unavailable" in r)
                    lines.append(f"- {', '.join(group)}: **not available**: {reason}")
                    continue
                text = (f"- {', '.join(group)}: **{c['class']}**, {c['cases'] - c['failed']} of "
                        f"{c['cases']} cases conform")
                if c["first_divergence"]:
                    text += f"; first divergence: {c['first_divergence']}"
                    if c["failed"] > 1:
                        shown = ", ".join(c["failed_cases"][:6])
                        text += f"; failing: {shown}" + (" ..." if c["failed"] > 6 else "")
                if c["chainer_errors_missed"]:
                    text += ("; does not raise Chainer's error in "
                             + ", ".join(c["chainer_errors_missed"]))
                lines.append(text)
            first = port["classes"][paths[0]]["not_applicable"]
            if first:
                lines.append(f"- not applicable ({paths[0]}): " + "; ".join(
                    f"{n} cases: {reason}" for reason, n in first.items()))
            if port["defaults"]:
                lines.append("- defaults that differ: " + "; ".join(
                    f"`{d['argument']}` {d[lib]} (Chainer {d['chainer']})"
                    for d in port["defaults"]))
    return "\n".join(lines) + "\n"


# -- the command line -----------------------------------------------------------------------
def add_parser(subparsers, jobs_type, default_jobs: int, epilog=None) -> None:
    """Register `migrate` on the command line's subparsers (``epilog``: its exit statuses)."""
    text = "Chainer's optimizers and hooks against torch.optim or optax: reports/migration-<library>.{md,json}"
    p = subparsers.add_parser("migrate", help=text, description=text, epilog=epilog)
    p.add_argument("--to", required=True, choices=table.LIBRARIES)
    p.add_argument("--only", default=None, help="comma-separated mapping names (default: all)")
    p.add_argument("--jobs", type=jobs_type, default=default_jobs, metavar="N",
                   help="worker processes, by default one per usable core")
    p.add_argument("--out", default="reports", metavar="DIR",
                   help="where migration-<library>.{md,json} go")


def command(args) -> int:
    """Run `migrate`; exit 0 (the report is the result, not a verdict)."""
    only = tuple(n for n in (args.only or "").split(",") if n)
    report = migrate(args.to, jobs=args.jobs, only=only)
    for path in write(report, args.out):
        print("wrote", path)
    for record in report["chainer"]:
        for port in record["ports"]:
            classes = ", ".join(f"{p} {c['class']}" for p, c in port["classes"].items())
            print(f"{record['chainer']:>22}  {port['name']:<36} {classes}")
    return 0
