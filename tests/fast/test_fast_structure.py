"""fast's modules talk through named interfaces (docs/fast.md, "The internal interface"):
no module reads or writes a private (underscore) name that another module defines, and
none imports one. A rename then fails at import or here, never at run time in another
module.

Read by the AST, not by running anything: an attribute ``obj._name`` is private to the
module that defines ``_name`` (a function, a class, or an attribute it assigns); ``self``
and ``cls`` reach only their own class's names.
"""
import ast
from pathlib import Path

FAST = Path(__file__).resolve().parents[2] / "fast"

#: (module, name): why a module of fast may touch a private name of something else.
ALLOWED = {
    ("boundary.py", "_loss_scale"): "Chainer's own attribute, where backward records the loss "
                                    "scale and Chainer's update rule reads it; it has no public one",
}


def defined_names(tree):
    """Every name a module defines: functions, classes, assigned names and attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
                    elif isinstance(sub, ast.Attribute):
                        names.add(sub.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def private_reads(path):
    """(line, text) of each use of another module's private name in ``path``."""
    tree = ast.parse(path.read_text())
    own = defined_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in own and (path.name, node.attr) not in ALLOWED:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fast"):
            found += [(node.lineno, "from {} import {}".format(node.module, a.name))
                      for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_of_fast_uses_another_modules_private_names():
    found = ["{}:{}: {}".format(path.relative_to(FAST.parent), line, text)
             for path in sorted(FAST.rglob("*.py")) for line, text in private_reads(path)]
    assert not found, "\n".join(found)


def test_the_check_sees_a_private_read(tmp_path):
    """The check itself: a planted read of another module's private name is found, a
    module's own private names and self's are not."""
    planted = tmp_path / "planted.py"
    planted.write_text("class A(object):\n    def __init__(self):\n        self._mine = 1\n\n"
                       "    def f(self, other):\n        return self._mine + other._mine + other._group\n")
    assert [text for _, text in private_reads(planted)] == ["other._group"]
    imported = tmp_path / "imported.py"
    imported.write_text("from fast.engine import _regroup\n")
    assert [text for _, text in private_reads(imported)] == ["from fast.engine import _regroup"]
