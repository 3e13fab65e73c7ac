"""`make gpu-check` without a GPU: its dry run runs every part that can run on the host (the
NVRTC build, the GPU tests, which skip, a slice of the conformance suite and one device-path
mutant through the emulated GPU path, the quick benchmark plan collected) and writes the
reports it would write on a GPU. About half a minute on the 2-core CI machine."""
import json
import os
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, ".ci", "gpu_check.py")
PARTS = ["build", "tests", "conformance", "mutants", "bench"]


def gpu_check(*args, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    done = gpu_check("--dry-run", "--out", str(out), "--logs", str(out / "logs.tar.gz"), "--jobs", "1")
    return out, done


def test_the_dry_run_passes_every_part(dry_run):
    out, done = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "reports" / "gpu-check-dry-run.json").read_text())
    assert summary["dry_run"] is True and summary["passed"] is True
    assert [p["part"] for p in summary["parts"]] == PARTS
    assert {p["status"] for p in summary["parts"]} == {"passed"}
    assert summary["device"]["device"] == "gpu-emulated" and summary["device"]["nvrtc"]


def test_each_part_states_its_result(dry_run):
    out, _ = dry_run
    results = {p["part"]: p["result"] for p in
               json.loads((out / "reports" / "gpu-check-dry-run.json").read_text())["parts"]}
    assert results["build"] == "PTX: 0 .ftz, 0 fma"
    assert "skipped" in results["tests"] and "failed" not in results["tests"]
    assert results["mutants"] == "detected 1/1 mutants"
    collected = int(results["bench"].split()[0])
    assert 50 < collected < 200  # the quick plan, not the full one (255 tests on a GPU)


def test_the_dry_run_writes_the_device_reports(dry_run):
    out, _ = dry_run
    conformance = json.loads((out / "reports" / "conformance-gpu-emulated.json").read_text())
    assert conformance["cases"] == 38 and conformance["failed"] == 0
    assert conformance["meta"]["device"] == "gpu-emulated"
    mutants = json.loads((out / "reports" / "mutants-gpu-emulated.json").read_text())
    assert (mutants["detected"], mutants["total"]) == (1, 1)
    assert mutants["mutants"][0]["mutant"] == "rule-t-advanced-on-skip"
    markdown = (out / "reports" / "gpu-check-dry-run.md").read_text()
    assert "PASSED" in markdown and "| mutants | passed |" in markdown
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = archive.getnames()
        tests_log = archive.extractfile("gpu-check-logs/tests.log").read().decode()
    assert "gpu-check-logs/ptx/cuda_driver.sm_90.ptx" in names
    assert {f"gpu-check-logs/{p}.log" for p in PARTS} <= set(names)
    # the GPU tests part runs the NCCL test too (its one-rank case fits a one-GPU machine)
    assert "tests/distributed/test_distributed_nccl.py" in tests_log and "needs 1 GPU(s)" in tests_log


def test_the_dry_run_leaves_the_committed_reports_alone():
    """Without --out, the dry run writes into a new temporary directory, never reports/."""
    done = gpu_check("--dry-run", "--only", "build")
    assert done.returncode == 0, done.stdout + done.stderr
    written = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert written and all(not path.startswith(REPO) for path in written)
    assert not os.path.exists(os.path.join(REPO, "reports", "gpu-check-dry-run.json"))


def test_a_spent_budget_fails_the_check(tmp_path):
    done = gpu_check("--dry-run", "--out", str(tmp_path), "--budget", "1", "--only", "conformance,bench")
    assert done.returncode == 1
    summary = json.loads((tmp_path / "reports" / "gpu-check-dry-run.json").read_text())
    assert summary["passed"] is False
    assert {p["status"] for p in summary["parts"]} == {"timed out"}


def test_without_a_gpu_the_real_check_refuses_to_start(tmp_path):
    pytest.importorskip("cupy")
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except Exception:
        pass
    done = gpu_check("--out", str(tmp_path))
    assert done.returncode == 2
    assert "cannot use the GPU" in done.stderr
    assert not (tmp_path / "reports" / "gpu-check.json").exists()


def test_an_unknown_part_is_a_usage_error(tmp_path):
    done = gpu_check("--dry-run", "--out", str(tmp_path), "--only", "build,coffee")
    assert done.returncode == 2 and "unknown parts: coffee" in done.stderr
