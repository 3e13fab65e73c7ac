"""The gate as a team with its own implementation meets it: --optimizers requires the named
optimizers' cases, a run that checks nothing fails, the implementation's exceptions and
contract gaps are shown (never a crash of the harness), outputs are created or refused before
the run, and the console says what ran."""
import json
import re
import xml.etree.ElementTree as ET

from conformance_cli import conformance, planted_copy

#: my_adam with Adam dropped from its exports.
NO_ADAM = ("optimizers = types.SimpleNamespace(Adam=Adam)", "optimizers = types.SimpleNamespace()")
#: my_adam whose update raises on its second step.
RAISES = ("        hp, dtype = self.hyperparam, compute_dtype(param.dtype)\n",
          "        hp, dtype = self.hyperparam, compute_dtype(param.dtype)\n"
          "        if self.t == 2:\n            raise RuntimeError('moment buffers lost')\n")
#: my_adam whose rules have no fp32_param (a part of the contract).
NO_FP32_PARAM = ("        self.fp32_param = None   # no fp32 master weights\n", "")
ONE_CASE = ("--filter", "matrix/Adam/float32/nohook/none", "--profile", "chainer")


def test_optimizers_requires_their_cases_and_a_dropped_optimizer_fails(tmp_path):
    passing = conformance("gate", "--impl", "examples.my_adam", "--optimizers", "Adam", *ONE_CASE,
                          "--json", str(tmp_path / "pass.json"))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "ran 1 of 1 case" in passing.stdout
    name = planted_copy(tmp_path, "no_adam", NO_ADAM)
    dropped = conformance("gate", "--impl", name, "--optimizers", "Adam", *ONE_CASE,
                          "--json", "dropped.json", cwd=tmp_path)
    assert dropped.returncode == 1, dropped.stdout + dropped.stderr
    assert "NOT APPLICABLE: case matrix/Adam/float32/nohook/none/chainer" in dropped.stdout
    assert "the implementation has no optimizer Adam" in dropped.stdout
    assert "(each a failure: --optimizers requires every selected case to run)" in dropped.stdout
    # Its reproduce line carries --optimizers, so it fails again on its own.
    line = re.search(r"reproduce: (.*)", dropped.stdout).group(1)
    assert "--optimizers Adam" in line
    # Not applicable has its own status.
    statuses = {r["status"] for r in json.loads((tmp_path / "dropped.json").read_text())["results"]}
    assert statuses == {"not_applicable"}
    assert json.loads((tmp_path / "pass.json").read_text())["results"][0]["status"] == "passed"


def test_a_run_in_which_no_case_ran_fails(tmp_path):
    proc = conformance("gate", "--impl", "examples.my_adam", "--filter",
                       "matrix/AdamW/float32/nohook/none", "--json", "none.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ran 0 of 2 cases: nothing was checked" in proc.stdout
    assert "FAIL: no case ran" in proc.stdout
    assert json.loads((tmp_path / "none.json").read_text())["verdict"] == "fail"


def test_an_unknown_optimizer_is_a_usage_error():
    proc = conformance("gate", "--impl", "examples.my_adam", "--optimizers", "sgd,Adamm")
    assert proc.returncode == 2 and "unknown optimizer 'Adamm' (did you mean Adam?)" in proc.stderr


def test_the_implementations_exception_is_shown_everywhere(tmp_path):
    name = planted_copy(tmp_path, "raising_adam", RAISES)
    proc = conformance("gate", "--impl", name, *ONE_CASE, "--json", "out/run.json",
                       "--junit-xml", "out/run.xml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = ("step 2: update(): the implementation raised RuntimeError: moment buffers lost, "
            "where the reference raises nothing")
    assert said in proc.stdout
    frame = re.compile(r'File ".*raising_adam\.py", line \d+, in _step\n\s+raise RuntimeError')
    assert frame.search(proc.stdout), proc.stdout
    [failure] = json.loads((tmp_path / "out" / "run.json").read_text())["failures"]
    assert failure["exception"]["type"] == "RuntimeError"
    assert failure["exception"]["message"] == "moment buffers lost"
    assert frame.search(failure["exception"]["traceback"]) and frame.search(failure["text"])
    [xml_failure] = ET.parse(tmp_path / "out" / "run.xml").iter("failure")
    assert said in xml_failure.get("message") and frame.search(xml_failure.text)


def test_a_missing_part_of_the_contract_fails_the_case_in_worker_processes(tmp_path):
    name = planted_copy(tmp_path, "no_master_attribute", NO_FP32_PARAM)
    proc = conformance("gate", "--impl", name, "--filter", "matrix/Adam/float", "--profile",
                       "chainer", "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("the implementation does not meet the contract: /p0: p.update_rule.fp32_param "
            "(None unless an fp32 master is in use): AttributeError") in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_outputs_are_created_or_refused_before_the_run(tmp_path):
    proc = conformance("gate", "--impl", "examples.my_adam", *ONE_CASE, "--quiet",
                       "--json", "a/b/run.json", "--junit-xml", "c/run.xml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "a" / "b" / "run.json").exists() and (tmp_path / "c" / "run.xml").exists()
    # Not a terminal: no progress bar; --quiet: no table.
    assert proc.stderr == "" and "optimizer  cases" not in proc.stdout
    (tmp_path / "blocker").write_text("a file")
    refused = conformance("gate", "--impl", "no_such_module_is_imported_first", *ONE_CASE,
                          "--json", "blocker/run.json", cwd=tmp_path)
    assert refused.returncode == 2 and "--json: cannot create the folder" in refused.stderr
    report = conformance("report", "--impl", "examples.my_adam", *ONE_CASE, "--out", "rep/x",
                         cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    assert {p.name for p in (tmp_path / "rep" / "x").iterdir()} >= {"conformance.json",
                                                                     "conformance.md"}
    assert not (tmp_path / "reports").exists()


def test_a_contract_gap_while_building_the_optimizer_fails_the_case():
    import types
    import examples.my_adam as my_adam
    from conformance import generators
    from conformance.compare import check_case

    class NoSetup:
        def __init__(self, **hyperparams):
            self.t = self.epoch = 0
    impl = types.SimpleNamespace(Parameter=my_adam.Parameter,
                                 optimizers=types.SimpleNamespace(Adam=NoSetup))
    case = next(c for c in generators.ci_suite("smoke") if c.optimizer == "Adam")
    [divergence] = check_case(impl, case).divergences
    assert divergence.describe() == ("building the optimizer: the implementation does not meet "
                                     "the contract: opt.setup: AttributeError: 'NoSetup' object "
                                     "has no attribute 'setup'")
