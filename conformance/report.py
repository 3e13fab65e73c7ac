"""Tables, JSON, Markdown and plots from comparison results."""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict

from .results import CaseResult


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
    return record["divergence"] is not None


def failed(record, require_all=False) -> bool:
    """A divergence; with `require_all`, also a case that was not applicable."""
    return diverged(record) or (require_all and record.get("not_applicable") is not None)


def count_not_applicable(records: list) -> int:
    return sum(r.get("not_applicable") is not None for r in records)


def not_applicable_counts(records: list) -> list:
    """(number of cases, reason) for every reason a case was not run, most frequent first
    (a case lacking two things counts under both)."""
    counts = defaultdict(int)
    for r in records:
        for reason in filter(None, (r.get("not_applicable") or "").split("; ")):
            counts[reason] += 1
    return sorted(((n, reason) for reason, n in counts.items()), key=lambda x: (-x[0], x[1]))


def count_line(records: list, require_all=False) -> str:
    """'N cases, F failed' (and ', A not applicable' when some were not run)."""
    n_failed = sum(failed(r, require_all) for r in records)
    line = f"{len(records)} cases, {n_failed} failed"
    skipped = count_not_applicable(records)
    if skipped:
        line += f", {skipped} not applicable" + (" (failures: --require-all)" if require_all else "")
    return line


def not_applicable_lines(records: list) -> list:
    return [f"  {n} cases: {reason}" for n, reason in not_applicable_counts(records)]


def summary_table(records: list) -> str:
    return format_table(summary_rows(records), SUMMARY_COLUMNS)


def result_record(r: CaseResult) -> dict:
    """A JSON-ready record of one case's outcome."""
    first = r.divergences[0] if r.divergences else None
    return {
        "case": r.case.name, "optimizer": r.case.optimizer, "dtype_mode": r.case.dtype_mode,
        "profile": r.case.profile, "passed": r.passed, "elements": r.elements,
        "unbounded": r.unbounded, "ambiguous_steps": r.ambiguous_steps,
        "step_errors": [e if math.isfinite(e) else "inf" for e in r.step_errors],
        "drift": r.drift,
        "divergence": None if first is None else first.describe(),
        "not_applicable": r.not_applicable,
    }


def write_reports(records: list, meta: dict, directory="reports") -> list:
    """Write conformance.json, conformance.md and the per-optimizer plots; return the paths.
    A run on another device than the CPU writes conformance-<device>.json/.md beside them
    (no plots), so that it never replaces the CPU report; a distributed run (`--ranks N`)
    writes conformance-ranks<N>.json/.md (no plots); a run through Chainer's objects
    (`--params chainer`) adds `-params-chainer` to the name (no plots)."""
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
        f.write(markdown(rows, failures, meta, records))
    plots = write_plots(records, directory) if device == "cpu" else []
    return [json_path, md_path] + plots


def markdown(rows, failed, meta, records) -> str:
    lines = ["# Conformance report", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    skipped = not_applicable_counts(records)
    lines += [f"- cases: {len(records)}, failed: {len(failed)}, not applicable: "
              f"{count_not_applicable(records)}"]
    lines += [f"  - {n} cases: {reason}" for n, reason in skipped]
    lines += ["",
              "Normalized error = |impl - reference| / bound; a value above 1 is a failure "
              "(docs/conformance.md). `worst` is the largest normalized error of any teacher-"
              "forced step; `drift` the largest relative distance between the free-running "
              "trajectories after the last step (reported, not gated).", "",
              "| " + " | ".join(SUMMARY_COLUMNS) + " |",
              "|" + "---|" * len(SUMMARY_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(
            f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])
            for c in SUMMARY_COLUMNS) + " |")
    if failed:
        lines += ["", "## Failures", ""]
        lines += [f"- `{r['case']}`: {r['divergence']}" for r in failed[:200]]
    return "\n".join(lines) + "\n"


def write_plots(records: list, directory: str) -> list:
    """PNG plots of the worst normalized error per step for each optimizer (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    by_optimizer = defaultdict(list)
    for r in records:
        if r["step_errors"]:
            by_optimizer[r["optimizer"]].append(r)
    paths = []
    for name, group in sorted(by_optimizer.items()):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for mode in sorted({r["dtype_mode"] for r in group}):
            steps = defaultdict(float)
            for r in group:
                if r["dtype_mode"] == mode:
                    for i, e in enumerate(_errors(r), 1):
                        steps[i] = max(steps[i], min(e, 1e3))
            xs = sorted(steps)
            ax.plot(xs, [max(steps[x], 1e-6) for x in xs], marker="o", label=mode)
        ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="bound")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("worst normalized error")
        ax.set_title(f"{name}: |impl - ref| / bound")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(directory, f"conformance-{name}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
