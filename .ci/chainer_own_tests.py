"""Chainer 7.8.1's own optimizer tests, run against `fast` (or Chainer itself).

Chainer's tests are not in its pip package and are never committed here. Point ``--source``
at a checkout of chainer/chainer or at its bare git directory (the tag v7.8.1 is then
exported); the three locations below are copied into a temporary folder, their imports of
``chainer.optimizers`` and ``chainer.optimizer_hooks`` pointed at ``fast``'s, and pytest runs
them in the Chainer environment (``make .venv-chainer/.installed``; Chainer's tests also import
``mock``, installed here when missing).

The tests that exercise Chainer itself rather than what an optimizer computes (its class
hierarchy, its private attributes, ChainerX) are listed in docs/drop-in.md, one line of reason
each; this script reads that table. Exit status: 0 when every failure is listed there and
every listed test still fails, 1 otherwise, 2 on a usage error. ``--report`` writes
reports/chainer-own-tests.{md,json}.

    python .ci/chainer_own_tests.py --source /path/to/chainer.git --report
"""
import argparse
import fnmatch
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TAG = "v7.8.1"
LOCATIONS = ("tests/chainer_tests/test_optimizer.py", "tests/chainer_tests/optimizers_tests",
             "tests/chainer_tests/optimizer_hooks_tests")
SUPPORT = ("tests/conftest.py", "tests/chainer_tests/__init__.py")
# No GPU, no iDeep, no ChainerX build here: the variants that need them are deselected, as
# they are when Chainer's own CI runs on a CPU without them.
MARKERS = "not gpu and not cudnn and not ideep"
KEYWORDS = "not chainerx_true and not ideep_always and not ChainerxImplementation"
EXCEPTIONS_DOC = ROOT / "docs" / "drop-in.md"
REWRITES = (
    (re.compile(r"^from chainer import optimizers$", re.M), "from fast import optimizers"),
    (re.compile(r"^from chainer import optimizer_hooks$", re.M), "from fast import optimizer_hooks"),
    (re.compile(r"\bchainer\.optimizers\b"), "fast.optimizers"),
    (re.compile(r"\bchainer\.optimizer_hooks\b"), "fast.optimizer_hooks"),
    (re.compile(r"^import chainer$", re.M), "import chainer\nimport fast"),
)


def export_sources(source, into):
    """Copy the test locations of Chainer ``TAG`` from a checkout or a git directory."""
    source = pathlib.Path(source)
    paths = list(LOCATIONS) + list(SUPPORT)
    if (source / "HEAD").exists() and not (source / "tests").exists():
        archive = subprocess.run(["git", "--git-dir", str(source), "archive", TAG] + paths,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        return
    for rel in paths:
        src, dst = source / rel, into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def point_at_fast(root):
    """Rewrite the optimizer imports of every test file; returns the files changed."""
    changed = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "conftest.py":
            continue
        text = path.read_text()
        new = text
        for pattern, replacement in REWRITES:
            new = pattern.sub(replacement, new)
        if new != text:
            path.write_text(new)
            changed.append(str(path.relative_to(root)))
    return changed


def listed_exceptions(doc=EXCEPTIONS_DOC):
    """(pattern, reason) rows of the table under '## Chainer's own tests' in docs/drop-in.md:
    `| `pattern` | reason |`, the pattern matched (fnmatch) against 'file::Class::test'."""
    rows, inside = [], False
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith("## Chainer's own tests")
            continue
        m = re.match(r"^\| `([^`]+)` \| (.+?) \|$", line) if inside else None
        if m:
            rows.append((m.group(1), m.group(2)))
    return rows


def short_id(nodeid):
    """'file::Class::test' with Chainer's parameterization suffixes dropped from the class."""
    file, _, rest = nodeid.partition("::")
    parts = rest.split("::")
    parts[0] = re.split(r"_param_\d+_|_use_chainerx_", parts[0])[0]
    return "::".join([file.replace("tests/chainer_tests/", "")] + parts)


# A pytest plugin that records every test's outcome and the first line of its failure, one
# JSON object a line (xdist workers' reports reach the controller, which writes them).
LOG_PLUGIN = """
import json, os
def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.failed or report.skipped):
        return
    if report.when != "call" and report.skipped and report.when == "teardown":
        return
    line = ""
    if report.failed:
        text = getattr(report, "longreprtext", "") or ""
        errors = [l[1:].strip() for l in text.splitlines() if l.startswith("E ")]
        tail = text.strip().splitlines()[-1:]
        line = errors[-1] if errors else (tail[0] if tail else "")
    with open(os.environ["OWN_TESTS_LOG"], "a") as f:
        f.write(json.dumps({"id": report.nodeid, "outcome": report.outcome, "message": line[:300]}) + "\\n")
"""


def run(python, impl, source, workers):
    with tempfile.TemporaryDirectory(prefix="chainer-own-tests-") as tmp:
        root = pathlib.Path(tmp)
        export_sources(source, root)
        changed = point_at_fast(root) if impl == "fast" else []
        log = root / "outcomes.jsonl"
        (root / "own_tests_log.py").write_text(LOG_PLUGIN)
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "own_tests_log", "-m", MARKERS,
               "-k", KEYWORDS] + (["-n", str(workers)] if workers > 1 else []) + list(LOCATIONS)
        env = dict(os.environ, OWN_TESTS_LOG=str(log),
                   PYTHONPATH=os.pathsep.join([str(ROOT), str(root), str(root / "tests")]))
        began = time.time()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        seconds = time.time() - began
        if not log.exists():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(2)
        results = parse_log(log)
    return results, changed, seconds, proc.returncode


def parse_log(path):
    """The outcome of each test (a failure in any phase counts), in the order they ended."""
    results = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        previous = results.get(r["id"])
        if previous is None or previous["outcome"] != "failed":
            results[r["id"]] = dict(r, short=short_id(r["id"]))
    return list(results.values())


def classify(results, exceptions):
    """Failures split into listed (with the row that lists them) and unlisted; rows that
    matched no failure are stale."""
    listed, unlisted, used = [], [], set()
    for r in results:
        if r["outcome"] != "failed":
            continue
        row = next((row for row in exceptions if fnmatch.fnmatch(r["short"], row[0])), None)
        if row is None:
            unlisted.append(r)
        else:
            used.add(row[0])
            listed.append(dict(r, reason=row[1], pattern=row[0]))
    stale = [row for row in exceptions if row[0] not in used]
    return listed, unlisted, stale


def chainer_version(python):
    out = subprocess.run([python, "-c", "import chainer, numpy; print(chainer.__version__, numpy.__version__)"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {"chainer": out[0], "numpy": out[1]}


def write_report(path_stem, data):
    path_stem.with_suffix(".json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    counts = data["counts"]
    lines = ["# Chainer 7.8.1's own optimizer tests on `{}`".format(data["impl"]), "",
             "Written by `python .ci/chainer_own_tests.py --report` (docs/drop-in.md says how). "
             "Chainer {chainer}, NumPy {numpy}; locations: {locs}; deselected: `-m \"{m}\" -k \"{k}\"` "
             "(no GPU, iDeep or ChainerX build here).".format(
                 locs=", ".join("`{}`".format(x) for x in LOCATIONS), m=MARKERS, k=KEYWORDS, **data["versions"]),
             "", "| | tests |", "| --- | --- |"]
    for key in ("passed", "failed", "skipped", "listed_failures", "unlisted_failures"):
        lines.append("| {} | {} |".format(key.replace("_", " "), counts[key]))
    lines += ["", "Run on Chainer itself, the same selection: {} passed, {} failed.".format(
        data["chainer_itself"]["passed"], data["chainer_itself"]["failed"]) if data.get("chainer_itself") else "",
              "", "## Failures listed as testing Chainer's internals", "",
              "| test | count | reason |", "| --- | --- | --- |"]
    by_pattern = {}
    for r in data["listed"]:
        by_pattern.setdefault((r["pattern"], r["reason"]), 0)
        by_pattern[(r["pattern"], r["reason"])] += 1
    for (pattern, reason), n in sorted(by_pattern.items()):
        lines.append("| `{}` | {} | {} |".format(pattern, n, reason))
    if data["unlisted"]:
        lines += ["", "## Failures not listed (each is a bug to fix)", ""]
        lines += ["- `{}`: {}".format(r["short"], r["message"]) for r in data["unlisted"]]
    path_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--source", required=True, help="a chainer/chainer checkout or git directory")
    parser.add_argument("--python", default=str(ROOT / ".venv-chainer" / "bin" / "python"),
                        help="the interpreter with Chainer 7.8.1 installed")
    parser.add_argument("--impl", choices=("fast", "chainer"), default="fast",
                        help="point the optimizer imports at fast, or leave them at Chainer")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--report", action="store_true", help="write reports/chainer-own-tests.{md,json}")
    args = parser.parse_args(argv)
    subprocess.run([args.python, "-m", "pip", "-q", "--disable-pip-version-check", "install", "mock"],
                   check=True, capture_output=True)
    results, changed, seconds, _ = run(args.python, args.impl, args.source, args.workers)
    listed, unlisted, stale = classify(results, listed_exceptions() if args.impl == "fast" else [])
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("passed", "failed", "skipped")}
    counts.update(listed_failures=len(listed), unlisted_failures=len(unlisted))
    data = {"impl": args.impl, "counts": counts, "seconds": round(seconds, 1), "rewritten": changed,
            "versions": chainer_version(args.python), "listed": listed, "unlisted": unlisted,
            "stale": [list(row) for row in stale]}
    if args.report and args.impl == "fast":
        itself, _, _, _ = run(args.python, "chainer", args.source, args.workers)
        data["chainer_itself"] = {k: sum(r["outcome"] == k for r in itself) for k in ("passed", "failed")}
        write_report(ROOT / "reports" / "chainer-own-tests", data)
    print("{impl}: {passed} passed, {failed} failed ({listed_failures} listed, {unlisted_failures} not), "
          "{skipped} skipped in {s:.0f} s".format(impl=args.impl, s=seconds, **counts))
    for r in unlisted:
        print("NOT LISTED  {}  {}".format(r["short"], r["message"]))
    for pattern, reason in stale:
        print("STALE ROW   {}  (no failure matches it)".format(pattern))
    return 0 if not unlisted and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
