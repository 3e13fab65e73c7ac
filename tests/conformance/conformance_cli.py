"""Running the command line and pytest in a fresh process, in any directory."""
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: A planted bug for a copy of examples/my_adam.py: the bias correction uses t + 1.
BIAS_BUG = ("(1 - hp.beta1 ** self.t)", "(1 - hp.beta1 ** (self.t + 1))")


def run(args, cwd, env=None, timeout=600):
    """`python <args>` in `cwd`, with the project on the path (as `python -m` would see it
    from the checkout) and warnings silenced."""
    environment = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=timeout)


def conformance(*args, cwd=ROOT, env=None):
    return run(["-m", "conformance", *args], cwd, env)


def pytest_run(*args, cwd):
    return run(["-m", "pytest", *args], cwd)


def planted_copy(directory, name="buggy_adam", bug=BIAS_BUG):
    """A copy of examples/my_adam.py with `bug` (old, new) planted, as module `name`."""
    with open(os.path.join(ROOT, "examples", "my_adam.py")) as f:
        source = f.read()
    assert source.count(bug[0]) == 1, "the planted bug must replace exactly one snippet"
    path = os.path.join(directory, name + ".py")
    with open(path, "w") as f:
        f.write(source.replace(*bug))
    return name


def reproduce_lines(output):
    return [line.split("reproduce: ", 1)[1] for line in output.splitlines() if "reproduce: " in line]


def reproduce(line, cwd):
    """Run a printed reproduce command (`python -m conformance gate ...`) here."""
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "conformance"], line
    return run(words[1:], cwd)
