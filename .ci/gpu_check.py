"""`make gpu-check`: everything that needs a GPU, in one command, within a time budget.

Run on a machine with one CUDA GPU, CuPy, NVRTC and the test and benchmark packages, from the
repository root (the lent H100/H200 image has them all but the mpich wheel, whose mpiexec the
NCCL test launches its rank with: carry it, or that one test fails saying so):

    python .ci/gpu_check.py [--out DIR] [--budget SECONDS] [--jobs N] [--logs PATH.tar.gz]

Parts, in order, each a subprocess with its own time limit cut to what the budget has left:

1. build        the NVRTC build for this GPU's architecture: PTX, registers and spills
                (python -m fast.backends.cuda --ptx), the IEEE contract checked;
2. tests        the GPU tests (tests/fast/test_fast_gpu.py, the build tests) and the
                'pure_nccl' communicator's one-rank case (tests/distributed/
                test_distributed_nccl.py; its two-rank case needs two GPUs and skips);
3. conformance  python -m conformance report --device gpu --level ci:
                reports/conformance-gpu.{json,md};
4. mutants      the kernel mutants whose planted code runs on the GPU, against it:
                reports/mutants-gpu.{json,md};
5. bench        the quick GPU benchmark plan: reports/benchmarks/<gpu>.{json,md}.

Every report names the GPU, its driver, the CUDA runtime and CuPy; reports/gpu-check.{json,md}
says what each part did, how long it took and its verdict. The exit status is 0 when every
part passed, 1 when any failed or ran out of time.

How it fits in 8 minutes on an H100/H200 machine (16 cores), by construction and by estimate
(it has not run on a GPU yet): the parts share one budget (--budget, 480 s), and each runs
with a limit cut to what is left, so the command ends within the budget however long a part
would take, and the summary says which part ran out. Estimated shares, from the CPU runs here:
the build about 15 s (one architecture; NVRTC is single-threaded, 20 s on this 2-core VM);
the tests about 1 minute (143 GPU tests, each comparing a short run with the host build of the
same driver, and one MPI launch of the NCCL rank); the conformance suite about 2 minutes (4,258 cases, 150 s of CPU on this VM,
in --jobs workers, one CUDA context each); the mutants about 1 minute (the 26 kernel mutants
whose code runs on the GPU, --jobs at a time, each one NVRTC build of its module plus the cases
up to its first divergence, against the conformance part's report as the baseline: no second
run of the suite); the quick benchmark plan about 2-3 minutes (110 items: AdamW, Adam and SGD
on 16M, 100M and ResNet-50 shapes, the torch peers, the copy bandwidth, loss-scaling and
memory rows, the no-sync evidence).

`--dry-run` runs the same parts on a machine without a GPU wherever they can run there: the
build for sm_90, the GPU tests (which then skip), the conformance suite and the device-path
mutants through fast's GPU code path emulated on the host (a small slice, --device
gpu-emulated), and the benchmark plan collected, not timed. CI runs it (tests/test_gpu_check.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from conformance.parallel import usable_cores  # noqa: E402  (the repository is on the path now)
DEFAULT_BUDGET_S = 480
#: What the dry run checks of the suites (each part's slice stays under a minute on 2 cores).
DRY_CONFORMANCE_FILTER = "float16_master/"
#: A host-side mutant the device path must catch through its deferred settling (the rule
#: counters rolled back after a device-decided skip); a kernel mutant would cost an emulator
#: build (about 40 s) in every CI run.
DRY_MUTANTS = "rule-t-advanced-on-skip"


@dataclass
class Part:
    name: str
    command: list
    limit_s: float       # the part's own limit; the budget may cut it shorter
    cwd: str = REPO
    summary: str = ""    # regex over the output: the line that states the part's result
    result: dict = field(default_factory=dict)


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    return parse


def gpu_arch() -> str:
    """sm_NN of GPU 0, as the CUDA backend would build for it."""
    import cupy
    from fast.backends import nvrtc
    return nvrtc.device_arch(cupy.cuda.Device(0).compute_capability, nvrtc.supported_archs())


def describe(dry_run: bool) -> dict:
    from conformance.target import describe_device
    from fast.backends import nvrtc
    described = describe_device("gpu-emulated" if dry_run else "gpu")
    described["nvrtc"] = "{}.{}".format(*nvrtc.nvrtc_version())
    described["commit"] = _git("rev-parse", "--short", "HEAD")
    described["date_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return described


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def plan(args, logs: str) -> list:
    py = sys.executable
    device = "gpu-emulated" if args.dry_run else "gpu"
    arch = "sm_90" if args.dry_run else gpu_arch()
    level = ["--level", "smoke", "--filter", DRY_CONFORMANCE_FILTER] if args.dry_run else ["--level", "ci"]
    # The mutants' baseline (the cases the correct fast passes) is the conformance part's report.
    baseline = ["--baseline-from", os.path.join("reports", f"conformance-{device}.json")]
    mutants = baseline + (["--level", "smoke", "--filter", DRY_CONFORMANCE_FILTER, "--only", DRY_MUTANTS]
                          if args.dry_run else ["--level", "ci", "--kind", "kernel"])
    bench = ["--bench-size", "quick"] + (["--collect-only", "-q"] if args.dry_run else ["-q"])
    return [
        Part("build", [py, "-m", "fast.backends.cuda", "--ptx", os.path.join(logs, "ptx"), "--arch", arch],
             limit_s=300, summary=r"PTX: .*"),
        Part("tests", [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/fast/test_fast_gpu.py",
                       "tests/fast/test_fast_gpu_build.py", "tests/distributed/test_distributed_nccl.py"],
             limit_s=300, summary=r"\d+ (passed|failed).*"),
        Part("conformance", [py, "-m", "conformance", "report", "--impl", "fast", "--device", device,
                             "--require-all", "--jobs", str(args.jobs), *level],
             limit_s=420, cwd=args.out, summary=r"^\d+ cases, \d+ failed.*"),
        Part("mutants", [py, "-m", "conformance", "mutants", "--device", device, "--jobs", str(args.jobs),
                         "--write", *mutants], limit_s=300, cwd=args.out, summary=r"detected \d+/\d+ mutants"),
        Part("bench", [py, "-m", "pytest", "-p", "no:cacheprovider", os.path.join(REPO, "benchmarks"),
                       "--device", "gpu", "--bench-report", os.path.join(args.out, "reports", "benchmarks"),
                       *bench], limit_s=300, cwd=REPO, summary=r"\d+ (passed|tests collected).*"),
    ]


def run_part(part: Part, limit_s: float, logs: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1")
    log_path = os.path.join(logs, part.name + ".log")
    started = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(part.command) + "\n")
        log.flush()
        try:
            code = subprocess.run(part.command, cwd=part.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=max(limit_s, 1)).returncode
            status = "passed" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            code, status = None, "timed out"
    with open(log_path) as log:
        output = log.read()
    lines = [line for line in output.splitlines() if part.summary and re.search(part.summary, line)]
    return {"part": part.name, "status": status, "exit_code": code, "seconds": round(time.monotonic() - started, 1),
            "limit_s": round(limit_s), "result": lines[-1].strip() if lines else "",
            "command": " ".join(os.path.relpath(c, REPO) if os.path.isabs(c) and c.startswith(REPO) else c
                                for c in part.command)}


def write_summary(out: str, description: dict, results: list, dry_run: bool, budget_s: float) -> list:
    directory = os.path.join(out, "reports")
    os.makedirs(directory, exist_ok=True)
    stem = "gpu-check-dry-run" if dry_run else "gpu-check"
    passed = all(r["status"] == "passed" for r in results)
    with open(os.path.join(directory, stem + ".json"), "w") as f:
        json.dump({"dry_run": dry_run, "device": description, "budget_s": budget_s, "passed": passed,
                   "parts": results}, f, indent=1)
    title = "GPU check (dry run: no GPU, device path emulated)" if dry_run else "GPU check"
    lines = [f"# {title}", "", "Written by `make gpu-check` (.ci/gpu_check.py).", ""]
    lines += [f"- {k}: {v}" for k, v in description.items()]
    lines += ["", f"**{'PASSED' if passed else 'FAILED'}** in {sum(r['seconds'] for r in results):.0f} s "
              f"(budget {budget_s:.0f} s).", "",
              "| part | status | seconds | result | command |", "|---|---|---:|---|---|"]
    lines += [f"| {r['part']} | {r['status']} | {r['seconds']} | {r['result']} | `{r['command']}` |"
              for r in results]
    with open(os.path.join(directory, stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return [os.path.join(directory, stem + ext) for ext in (".json", ".md")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python .ci/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="where reports/ is written (default: the repository; "
                        "a new temporary directory for --dry-run)")
    parser.add_argument("--budget", type=_positive(float), default=DEFAULT_BUDGET_S,
                        help="seconds for all parts together")
    parser.add_argument("--jobs", type=_positive(int), default=usable_cores(),
                        help="conformance worker processes, and mutants checked at once")
    parser.add_argument("--logs", default=None, help="also pack every part's log and the PTX into this .tar.gz")
    parser.add_argument("--only", default=None, help="comma-separated parts to run (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: run what can run on the host")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="gpu-check-dry-run-") if args.dry_run else REPO
    args.out = os.path.abspath(args.out)
    os.makedirs(os.path.join(args.out, "reports"), exist_ok=True)
    logs = tempfile.mkdtemp(prefix="gpu-check-")
    try:
        description = describe(args.dry_run)
    except Exception as exc:
        print(f"error: cannot use the GPU: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    parts = plan(args, logs)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {p.name for p in parts}
        if unknown:
            parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
        parts = [p for p in parts if p.name in wanted]
    print("GPU check on " + ", ".join(f"{k} {v}" for k, v in description.items()), flush=True)
    deadline, results = time.monotonic() + args.budget, []
    for part in parts:
        left = deadline - time.monotonic()
        if left < 5:
            results.append({"part": part.name, "status": "timed out", "exit_code": None, "seconds": 0,
                            "limit_s": 0, "result": "not started: the budget was spent",
                            "command": " ".join(part.command)})
        else:
            results.append(run_part(part, min(part.limit_s, left), logs))
        r = results[-1]
        print(f"  {r['part']:12s} {r['status']:9s} {r['seconds']:7.1f}s  {r['result']}", flush=True)
    for path in write_summary(args.out, description, results, args.dry_run, args.budget):
        print("wrote", path)
    if args.logs:
        with tarfile.open(args.logs, "w:gz") as archive:
            archive.add(logs, arcname="gpu-check-logs")
        print("wrote", args.logs)
    return 0 if all(r["status"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
