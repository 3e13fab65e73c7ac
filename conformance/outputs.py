"""Machine-readable results of a run: a JUnit XML file and a JSON file.

JUnit (`--junit-xml`): one <testcase> per case, named by the case; a failed case holds a
<failure> whose message is its first divergence and whose text is the diagnosis and the
reproduce line; a case that was not applicable is <skipped> with the reason (a <failure>
under --require-all). JSON (`--json`): the run's options, the verdict, the counts, the
per-optimizer summary, every failure with its diagnosis and reproduce line, every reason a
case was not run, and every case's record (`report --results` writes the reports from it).
Neither file holds a time or a host name, so both are the same bytes for any --jobs.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from . import report
from .diagnosis import failure_text, headline


def json_payload(results: list, meta: dict, reproduce, require_all=False) -> dict:
    """`reproduce(case)` is the command that runs one case again."""
    records = [report.result_record(r) for r in results]
    failures = [r for r in results if r.failed(require_all)]
    return {
        "meta": meta,
        "verdict": "fail" if failures else "pass",
        "require_all": require_all,
        "cases": len(records),
        "failed": len(failures),
        "not_applicable": report.count_not_applicable(records),
        "not_applicable_reasons": [{"cases": n, "reason": why}
                                   for n, why in report.not_applicable_counts(records)],
        "summary": report.summary_rows(records),
        "failures": [{"case": r.case.name, "diagnosis": headline(r),
                      "reproduce": reproduce(r.case),
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
            ET.SubElement(case, "skipped", message=f"not applicable: {r.not_applicable}")
    return ET.ElementTree(root)


def write_junit(path: str, tree: ET.ElementTree) -> None:
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
