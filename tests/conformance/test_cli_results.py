"""run/gate/report: --jobs changes nothing, --junit-xml and --json describe every case,
report writes from a saved run, and --require-all fails the cases that cannot run."""
import json
import xml.etree.ElementTree as ET

from conformance_cli import conformance, planted_copy, reproduce_lines

SELECTION = ("--impl", "fast", "--filter", "matrix/SGD/float32")


def files(directory):
    return {p.name: p.read_bytes() for p in sorted((directory / "reports").iterdir())}


def test_jobs_change_no_byte_and_report_writes_from_a_saved_run(tmp_path):
    saved = {}
    for jobs in ("1", "3"):
        out = tmp_path / f"jobs{jobs}"
        out.mkdir()
        proc = conformance("run", *SELECTION, "--jobs", jobs, "--json", "run.json",
                           "--junit-xml", "run.xml", cwd=out)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        saved[jobs] = (proc.stdout, (out / "run.json").read_bytes(), (out / "run.xml").read_bytes())
        written = conformance("report", "--results", "run.json", cwd=out)
        assert written.returncode == 0, written.stdout + written.stderr
    assert saved["1"] == saved["3"]
    direct = tmp_path / "direct"
    direct.mkdir()
    proc = conformance("report", *SELECTION, "--jobs", "2", cwd=direct)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert files(direct) == files(tmp_path / "jobs1") == files(tmp_path / "jobs3")
    assert json.loads(saved["1"][1])["cases"] == 42


def test_junit_and_json_hold_every_case_and_each_failure_with_its_reproduce_line(tmp_path):
    name = planted_copy(tmp_path)
    proc = conformance("gate", "--impl", name, "--filter", "matrix/Adam/float32/nohook",
                       "--json", "gate.json", "--junit-xml", "gate.xml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "gate.xml").iter("testcase")}
    assert len(cases) == 6
    failed = {n: c.find("failure") for n, c in cases.items() if c.find("failure") is not None}
    skipped = {n for n, c in cases.items() if c.find("skipped") is not None}
    assert set(failed) == {"matrix/Adam/float32/nohook/none/chainer"} and len(skipped) == 5
    failure = failed["matrix/Adam/float32/nohook/none/chainer"]
    assert "normalized" in failure.get("message")
    assert reproduce_lines(failure.text) == reproduce_lines(proc.stdout)
    result = json.loads((tmp_path / "gate.json").read_text())
    assert result["verdict"] == "fail" and result["failed"] == 1 and result["not_applicable"] == 5
    [entry] = result["failures"]
    assert entry["reproduce"] == reproduce_lines(proc.stdout)[0]
    assert {"cases": 4, "reason": "Adam has no loss_scaling"} in result["not_applicable_reasons"]


def test_require_all_fails_the_cases_that_cannot_run(tmp_path):
    selection = ("gate", "--impl", "examples.my_adam", "--filter", "matrix/Adam/float32/nohook")
    assert conformance(*selection).returncode == 0
    proc = conformance(*selection, "--require-all")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "6 cases, 5 failed, 5 not applicable (failures: --require-all)" in proc.stdout
    assert "NOT APPLICABLE: case matrix/Adam/float32/nohook/none/fixed" in proc.stdout


def test_report_refuses_a_file_it_cannot_use(tmp_path):
    (tmp_path / "gate.json").write_text(json.dumps({"meta": {}, "results": []}))
    (tmp_path / "older.json").write_text(json.dumps({"meta": {}, "drift_measured": True,
                                                     "results": [{"case": "c", "passed": True}]}))
    for path in ("missing.json", "gate.json", "older.json"):
        proc = conformance("report", "--results", path, cwd=tmp_path)
        assert proc.returncode == 2 and f"--results {path}" in proc.stderr, proc.stderr
    assert "no status" in proc.stderr


def test_a_hypothesis_case_is_reproduced_by_its_repr_without_a_level():
    """`deep` (conformance.campaign) prints reproduce lines from arguments without --level."""
    import argparse
    import dataclasses
    import shlex

    from conformance import generators
    from conformance.cli import reproduce_command
    from conformance.runner import case_from_repr
    case = dataclasses.replace(generators.ci_suite("smoke")[0], name="hypothesis")
    line = reproduce_command(argparse.Namespace(impl="fast", device="cpu"), case)
    words = shlex.split(line)
    assert words[words.index("--case-repr") + 1] and "--level" not in words
    assert case_from_repr(words[words.index("--case-repr") + 1]) == case
