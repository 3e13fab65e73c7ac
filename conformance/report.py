"""Tables, summaries, JSON, Markdown and plots from comparison results.

Everything here works on records (`result_record`: one JSON-ready dict per case), so the same
words come out of a run, of a saved run (`report --results`) and of the pytest plugin.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict

from .applicability import grouped_reasons
from .cases import DTYPE_MODES, PROFILES
from .results import CaseResult

#: What the `worst` column, the plots and a diagnosis's "normalized error" mean.
LEGEND = (
    "worst: the largest normalized error |impl - reference| / bound of any element a "
    "teacher-forced step checked. 0: equal; at most 1 conforms; exactly 1 (common on a "
    "conforming run): a stored value at the far end of the storage values the bound allows "
    "(typically one storage ulp from the reference's rounding); inf: a non-finite value the "
    "reference does not "
    "have, or a divergence that is not a value's (an exception, a counter). A failing case's "
    "worst is the error of its divergence, as its diagnosis shows it. unbounded: elements "
    "whose bound was infinite (any value accepted); ambiguous_steps: steps re-run with a "
    "near-threshold decision taken the other way; drift: the largest relative distance between "
    "the free-running trajectories after the last step, reported, not gated (`gate` does not "
    "measure it).")


def cases(n: int) -> str:
    """'1 case', 'N cases'."""
    return f"{n} case" if n == 1 else f"{n} cases"


def legend_lines(width: int = 92) -> list:
    """The legend, wrapped for a terminal."""
    import textwrap
    return textwrap.wrap(LEGEND, width)


def _errors(record) -> list:
    return [math.inf if e == "inf" else e for e in record["step_errors"]]


def summary_rows(records: list) -> list:
    """One row per optimizer: cases, failures, elements checked, worst normalized error."""
    rows = defaultdict(lambda: {"cases": 0, "failed": 0, "n/a": 0, "elements": 0,
                                "unbounded": 0, "ambiguous_steps": 0, "worst": 0.0,
                                "drift": 0.0})
    for r in records:
        row = rows[r["optimizer"]]
        row["cases"] += 1
        row["failed"] += 1 if diverged(r) else 0
        row["n/a"] += 0 if r.get("not_applicable") is None else 1
        for key in ("elements", "unbounded", "ambiguous_steps"):
            row[key] += r[key]
        row["worst"] = max([row["worst"]] + _errors(r))
        row["drift"] = max(row["drift"], r.get("drift", 0.0))
    return [{"optimizer": name, **row} for name, row in sorted(rows.items())]


def format_table(rows: list, columns: list) -> str:
    """A plain-text table with right-aligned numbers."""
    def cell(v):
        if isinstance(v, float):
            return "inf" if math.isinf(v) else f"{v:.3g}"
        return str(v)
    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
              for r in cells]
    return "\n".join(lines)


SUMMARY_COLUMNS = ["optimizer", "cases", "failed", "n/a", "elements", "unbounded",
                   "ambiguous_steps", "worst", "drift"]


def diverged(record) -> bool:
    return record["status"] == "failed"


def not_applicable(record) -> bool:
    return record["status"] == "not_applicable"


def failed(record, require_all=False) -> bool:
    """A divergence; with `require_all`, also a case that was not applicable."""
    return diverged(record) or (require_all and not_applicable(record))


def count_not_applicable(records: list) -> int:
    return sum(not_applicable(r) for r in records)


def not_applicable_counts(records: list) -> list:
    """(number of cases, reason) for every reason a case was not run, most frequent first
    (a case lacking two things counts under both)."""
    counts = defaultdict(int)
    for r in records:
        for reason in r.get("not_applicable") or ():
            counts[reason] += 1
    return sorted(((n, reason) for reason, n in counts.items()), key=lambda x: (-x[0], x[1]))


def count_line(records: list, required_by=None) -> str:
    """'N cases, F failed' (and ', A not applicable' when some were not run, with what made
    them failures)."""
    n_failed = sum(failed(r, required_by is not None) for r in records)
    line = f"{cases(len(records))}, {n_failed} failed"
    skipped = count_not_applicable(records)
    if skipped:
        line += f", {skipped} not applicable"
        if required_by:
            line += f" (failures: {required_by})"
    return line


def ran_summary(records: list) -> dict:
    """What ran, per optimizer: its cases, dtype modes and profiles (the cases that were not
    applicable left out)."""
    by_optimizer = defaultdict(list)
    for r in records:
        if not not_applicable(r):
            by_optimizer[r["optimizer"]].append(r)
    return {name: {"cases": len(group),
                   "dtype_modes": [m for m in DTYPE_MODES if any(r["dtype_mode"] == m for r in group)],
                   "profiles": [p for p in PROFILES if any(r["profile"] == p for r in group)]}
            for name, group in sorted(by_optimizer.items())}


def ran_lines(records: list) -> list:
    """What ran: per optimizer, its cases, dtype modes and profiles."""
    summary = ran_summary(records)
    ran = sum(entry["cases"] for entry in summary.values())
    if not ran:
        return [f"ran 0 of {cases(len(records))}: nothing was checked"]
    lines = [f"ran {ran} of {cases(len(records))} (optimizer, cases, dtype modes x profiles):"]
    width = max(len(name) for name in summary)
    for name, entry in summary.items():
        lines.append(f"  {name.ljust(width)}  {entry['cases']:>5}  "
                     f"{', '.join(entry['dtype_modes'])} x {', '.join(entry['profiles'])}")
    return lines


def not_run_lines(records: list, required_by=None, option_prefix="--") -> list:
    """What did not run, grouped by reason (the reasons that differ only in what lacks the
    part make one line). `option_prefix`: how the options are spelt (the pytest plugin's
    are --conformance-...)."""
    skipped = [r["not_applicable"] for r in records if not_applicable(r)]
    if not skipped:
        return []
    if required_by:
        why = f"each a failure: {required_by} requires every selected case to run"
    else:
        why = (f"not failures; {option_prefix}optimizers NAMES or {option_prefix}require-all "
               f"makes every selected case required")
    head = f"not run: {cases(len(skipped))} the implementation cannot run ({why}):"
    return [head] + [f"  {cases(n)}: {reason}" for n, reason in grouped_reasons(skipped)]


def nothing_ran(records: list) -> bool:
    """No case ran (every selected case was not applicable): a run that checked nothing."""
    return all(not_applicable(r) for r in records)


def verdict_failed(records: list, require_all=False) -> bool:
    """The run fails: a case diverged, a case it requires (`require_all`) could not run, or
    no case ran."""
    return nothing_ran(records) or any(failed(r, require_all) for r in records)


def summary_table(records: list) -> str:
    return format_table(summary_rows(records), SUMMARY_COLUMNS)


def result_record(r: CaseResult) -> dict:
    """A JSON-ready record of one case's outcome; `status` is 'passed', 'failed' or
    'not_applicable'."""
    first = r.divergences[0] if r.divergences else None
    return {
        "case": r.case.name, "optimizer": r.case.optimizer, "dtype_mode": r.case.dtype_mode,
        "profile": r.case.profile, "status": r.status, "steps": r.case.steps,
        "elements": r.elements, "unbounded": r.unbounded, "ambiguous_steps": r.ambiguous_steps,
        "step_errors": [e if math.isfinite(e) else "inf" for e in r.step_errors],
        "drift": r.drift,
        "divergence": None if first is None else first.describe(),
        "not_applicable": None if r.not_applicable is None else list(r.not_applicable),
    }


def write_reports(records: list, meta: dict, directory="reports", required_by=None) -> list:
    """Write conformance.json, conformance.md and the per-optimizer plots into `directory`;
    return the paths. A run on another device than the CPU writes conformance-<device>.json/.md
    (no plots), so that it never replaces the CPU report; a distributed run (`--ranks N`)
    writes conformance-ranks<N>.json/.md (no plots); a run through Chainer's objects
    (`--params chainer`) adds `-params-chainer` to the name (no plots). No plots without
    matplotlib (`can_plot`)."""
    os.makedirs(directory, exist_ok=True)
    rows = summary_rows(records)
    failures = [r for r in records if diverged(r)]
    skipped = not_applicable_counts(records)
    payload = {"meta": meta, "summary": rows, "cases": len(records), "failed": len(failures),
               "not_applicable": count_not_applicable(records),
               "not_applicable_reasons": [{"cases": n, "reason": why} for n, why in skipped],
               "results": records}
    device = meta.get("device", "cpu")
    stem = "conformance" if device == "cpu" else f"conformance-{device}"
    if meta.get("ranks", 1) > 1:  # the distributed slice: beside the one-process report
        stem, device = f"conformance-ranks{meta['ranks']}", "ranks"
    if meta.get("params", "impl") != "impl":
        stem, device = f"{stem}-params-{meta['params']}", "params"
    json_path = os.path.join(directory, stem + ".json")
    with open(json_path, "w") as f:
        json.dump(payload, f, indent=1, default=str)
    md_path = os.path.join(directory, stem + ".md")
    with open(md_path, "w") as f:
        f.write(markdown(rows, failures, meta, records, required_by))
    plots = write_plots(records, directory) if device == "cpu" and can_plot() else []
    return [json_path, md_path] + plots


def markdown(rows, failed_records, meta, records, required_by=None) -> str:
    lines = ["# Conformance report", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += [f"- {count_line(records, required_by)}", "", "```"]
    lines += ran_lines(records) + not_run_lines(records, required_by)
    lines += ["```", "", LEGEND, "",
              "| " + " | ".join(SUMMARY_COLUMNS) + " |",
              "|" + "---|" * len(SUMMARY_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(
            f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])
            for c in SUMMARY_COLUMNS) + " |")
    if failed_records:
        lines += ["", "## Failures", ""]
        lines += [f"- `{r['case']}`: {r['divergence']}" for r in failed_records[:200]]
    return "\n".join(lines) + "\n"


# -- plots ------------------------------------------------------------------------------------
#: Normalized errors above this are drawn at it, marked as clipped.
PLOT_CLIP = 1e3
#: Where an exact zero (equal bits) is drawn on the logarithmic axis, marked as zero.
PLOT_ZERO = 1e-6


def can_plot() -> bool:
    """Whether matplotlib (the `plot` extra) is importable."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_series(records: list) -> dict:
    """dtype mode -> {step: the worst normalized error of any case at that step}, for one
    optimizer's records. A failing case counts with its divergence's error (its last) at every
    step from its divergence to its last step, so a failure is never drawn as recovered."""
    series = defaultdict(dict)
    for r in records:
        errors = _errors(r)
        if not errors:
            continue
        if diverged(r):
            errors = errors + [errors[-1]] * (r["steps"] - len(errors))
        steps = series[r["dtype_mode"]]
        for step, error in enumerate(errors, 1):
            steps[step] = max(steps.get(step, 0.0), error)
    return {mode: series[mode] for mode in DTYPE_MODES if mode in series}


def first_failures(records: list) -> dict:
    """dtype mode -> the first step at which one of its cases diverged (modes without a
    failing case left out)."""
    first = {}
    for r in records:
        if diverged(r) and r["step_errors"]:
            step = len(r["step_errors"])
            first[r["dtype_mode"]] = min(first.get(r["dtype_mode"], step), step)
    return first


def draw_optimizer(ax, name: str, records: list) -> None:
    """One optimizer's plot on `ax`: per dtype mode, the worst normalized error per step;
    exact zeros drawn on a line of their own (labelled 0), errors above PLOT_CLIP (and inf)
    drawn at it with an upward marker; whole-number steps."""
    from matplotlib.ticker import FixedLocator, MaxNLocator
    clipped_any = zero_any = False
    failing = first_failures(records)
    for mode, steps in plot_series(records).items():
        xs = sorted(steps)
        values = [steps[x] for x in xs]
        shown = [PLOT_ZERO if v == 0 else min(v, PLOT_CLIP) for v in values]
        label = mode if mode not in failing else f"{mode}: fails from step {failing[mode]}"
        line, = ax.plot(xs, shown, marker="o", markersize=3, label=label)
        zeros = [x for x, v in zip(xs, values) if v == 0]
        clipped = [x for x, v in zip(xs, values) if v > PLOT_CLIP]
        if zeros:
            zero_any = True
            ax.plot(zeros, [PLOT_ZERO] * len(zeros), linestyle="none", marker="o",
                    markerfacecolor="white", color=line.get_color())
        if clipped:
            clipped_any = True
            ax.plot(clipped, [PLOT_CLIP] * len(clipped), linestyle="none", marker="^",
                    markersize=8, color=line.get_color())
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="bound (1)")
    if zero_any:
        ax.axhline(PLOT_ZERO, color="grey", linestyle=":", linewidth=1,
                   label="0: equal bits (hollow)")
    if clipped_any:
        ax.axhline(PLOT_CLIP, color="black", linestyle=":", linewidth=1,
                   label=f"> {PLOT_CLIP:g} or inf, clipped (triangles)")
    ax.set_yscale("log")
    ax.set_ylim(PLOT_ZERO / 3, PLOT_CLIP * 3)
    ticks = [PLOT_ZERO, 1e-4, 1e-2, 1.0, 1e2, PLOT_CLIP]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticklabels(["0", "1e-4", "0.01", "1", "100", f"{PLOT_CLIP:g}"])
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("worst normalized error")
    ax.set_title(f"{name}: |impl - ref| / bound, worst per step")
    ax.legend(fontsize=6)


def write_plots(records: list, directory: str) -> list:
    """PNG plots of the worst normalized error per step for each optimizer (needs
    matplotlib: the `plot` extra)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_optimizer = defaultdict(list)
    for r in records:
        if r["step_errors"]:
            by_optimizer[r["optimizer"]].append(r)
    paths = []
    for name, group in sorted(by_optimizer.items()):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        draw_optimizer(ax, name, group)
        fig.tight_layout()
        path = os.path.join(directory, f"conformance-{name}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
