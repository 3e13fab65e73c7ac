"""The `gate` extra is all a user needs: the gate and the pytest plugin import nothing outside
the project's dependencies and that extra's (checked on what a run really imports; the
wheel installed with `[gate]` into a fresh venv was checked by hand, see docs/conformance.md)."""
import json
import os
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement

from conformance_cli import ROOT, run

PROJECT = "chainer-optim-conformance"

# Run `run` as in an environment holding only the `allowed` distributions: a top-level module
# of any other installed distribution cannot be imported (a package's optional import of it,
# hypothesis's of typing_extensions, then falls back as it would in a [gate] install); print
# the distributions whose modules were imported.
IMPORTED = """
import importlib.abc, importlib.metadata as metadata, json, sys
owners = metadata.packages_distributions()
allowed = {allowed!r}

class OnlyAllowed(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        dists = {{d.lower().replace("_", "-") for d in owners.get(name.split(".")[0], [])}}
        if dists and not dists & allowed:
            raise ModuleNotFoundError("not in a [gate] install: " + name)
        return None

sys.meta_path.insert(0, OnlyAllowed())
at_start = set(sys.modules)
{run}
names = {{name.split(".")[0] for name in set(sys.modules) - at_start}}
print(json.dumps(sorted({{d for name in names for d in owners.get(name, [])}})))
"""


def _requirements(extra=None) -> list:
    """The project's requirements: its dependencies, or those of one extra."""
    environment = dict(default_environment(), extra=extra or "")
    out = []
    for text in metadata.requires(PROJECT):
        requirement = Requirement(text)
        in_extra = requirement.marker is not None and "extra" in str(requirement.marker)
        if in_extra == (extra is not None) and (requirement.marker is None
                                                or requirement.marker.evaluate(environment)):
            out.append(requirement)
    return out


def _closure(requirements) -> set:
    """The distributions `requirements` install, with their own dependencies (no extras)."""
    environment = dict(default_environment(), extra="")
    seen, todo = set(), [Requirement(r.name) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen or (requirement.marker and not requirement.marker.evaluate(environment)):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or ()]
    return seen


def _imported(code: str, tmp_path, allowed) -> set:
    proc = run(["-c", IMPORTED.format(run=code, allowed=allowed)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {name.lower().replace("_", "-") for name in json.loads(proc.stdout.splitlines()[-1])}


def test_the_gate_extra_is_hypothesis_and_pytest():
    assert sorted(r.name for r in _requirements("gate")) == ["hypothesis", "pytest"]


def test_the_gate_and_the_plugin_import_only_the_gate_extras_closure(tmp_path):
    allowed = _closure(_requirements() + _requirements("gate")) | {PROJECT}
    (tmp_path / "my_adam.py").write_text(open(os.path.join(ROOT, "examples", "my_adam.py")).read())
    gate = ("from conformance.cli import main\n"
            "code = main(['gate', '--impl', 'my_adam', '--filter', 'matrix/Adam/float32/nohook',"
            " '--jobs', '2', '--quiet'])\nassert code == 0, code")
    # Only the plugin a [gate] install has (this environment has pytest-benchmark and xdist).
    plugin = ("import os\nos.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'\nimport pytest\n"
              "code = pytest.main(['-q', '-p', 'conformance.pytest_plugin', '-p', "
              "'no:cacheprovider', '--conformance-impl=my_adam', '-k', "
              "'matrix/Adam/float32/nohook/none'])\nassert code == 0, code")
    for code in (gate, plugin):
        imported = _imported(code, tmp_path, allowed)
        assert imported <= allowed, imported - allowed
        assert "numpy" in imported and "hypothesis" in imported
    assert not allowed & {"mpich", "mpi4py", "pytest-benchmark", "matplotlib"}
