"""Machine-readable results of a run: a JUnit XML file and a JSON file.

JUnit (`--junit-xml`): one <testcase> per case, named by the case; a failed case holds a
<failure> whose message is its first divergence and whose text is the diagnosis (with the
implementation's traceback, where it raised) and the reproduce line; a case that was not
applicable is <skipped> with the reasons (a <failure> when the run requires every case:
--optimizers, --require-all). JSON (`--json`): the run's options, the verdict, the counts,
what ran, the per-optimizer summary, every failure with its diagnosis, the implementation's
exception and the reproduce line, every reason a case was not run, and every case's record
with its status (`report --results` writes the reports from it). Neither file holds a time
or a host name, so both are the same bytes for any --jobs.

`check_writable` runs before a run starts, so a path that cannot be written is refused before
any case runs.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

from . import report
from .applicability import grouped_reasons
from .diagnosis import exception_record, failure_text, headline
from .target import UsageError


def check_writable(option: str, path: str | None) -> None:
    """Create the folder that will hold `path` (an output file), or refuse it (UsageError
    naming `option`) when it cannot be written: before the run starts."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: a folder; name the file to write")
    check_folder(option, os.path.dirname(os.path.abspath(path)))


def check_folder(option: str, folder: str) -> None:
    """Create `folder` (an output folder) if missing, or refuse it (UsageError naming
    `option`) when it cannot be created or written."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option}: cannot create the folder {folder} ({exc.strerror})") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: cannot write into the folder {folder}")


def json_payload(results: list, meta: dict, reproduce, require_all=False) -> dict:
    """`reproduce(case)` is the command that runs one case again; `require_all`: a case that
    was not applicable is a failure (--optimizers, --require-all)."""
    records = [report.result_record(r) for r in results]
    failures = [r for r in results if r.failed(require_all)]
    skipped = [r["not_applicable"] for r in records if report.not_applicable(r)]
    return {
        "meta": meta,
        "verdict": "fail" if report.verdict_failed(records, require_all) else "pass",
        "require_all": require_all,
        "cases": len(records),
        "ran": sum(r["status"] != "not_applicable" for r in records),
        "failed": len(failures),
        "not_applicable": report.count_not_applicable(records),
        "ran_by_optimizer": report.ran_summary(records),
        "not_applicable_reasons": [{"cases": n, "reason": why}
                                   for n, why in report.not_applicable_counts(records)],
        "not_applicable_groups": [{"cases": n, "reason": why} for n, why in grouped_reasons(skipped)],
        "summary": report.summary_rows(records),
        "failures": [{"case": r.case.name, "status": r.status, "diagnosis": headline(r),
                      "exception": exception_record(r), "reproduce": reproduce(r.case),
                      "text": failure_text(r, reproduce(r.case))} for r in failures],
        "results": records,
    }


def write_json(path: str, payload: dict) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=str)
        f.write("\n")


def junit_tree(results: list, suite: str, reproduce, require_all=False) -> ET.ElementTree:
    """The JUnit XML tree: one testsuite named `suite`, one testcase per case."""
    failures = sum(r.failed(require_all) for r in results)
    skipped = sum(r.not_applicable is not None and not require_all for r in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                         failures=str(failures), errors="0", skipped=str(skipped))
    for r in results:
        case = ET.SubElement(node, "testcase", classname=suite, name=r.case.name)
        if r.failed(require_all):
            failure = ET.SubElement(case, "failure", message=headline(r))
            failure.text = failure_text(r, reproduce(r.case))
        elif r.not_applicable is not None:
            ET.SubElement(case, "skipped", message=headline(r))
    return ET.ElementTree(root)


def write_junit(path: str, tree: ET.ElementTree) -> None:
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
