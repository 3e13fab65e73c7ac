"""How a mutant is planted into `fast`: a kernel source edit or a Python patch.

A kernel edit copies fast/kernels/ to a private directory, replaces one exact snippet (it
must occur exactly once, so a mutant can never silently plant nothing) and points fast's
CPU backend at the copy; the backend compiles and caches it like the real kernels. A Python
patch replaces one attribute of a fast module. Both are applied in a fresh process before
fast is first used (worker.py), so nothing leaks into another mutant or into the real fast.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass


class PlantingError(RuntimeError):
    """The snippet a mutant edits is not in fast (fast changed): the mutant cannot run."""


@dataclass(frozen=True)
class KernelEdit:
    """Replace `old` (exactly one occurrence) by `new` in fast/kernels/`file`."""
    file: str
    old: str
    new: str

    def plant(self) -> None:
        import fast.backends.cpu as cpu
        source_dir = cpu.KERNEL_DIR
        with open(os.path.join(source_dir, self.file)) as f:
            text = f.read()
        count = text.count(self.old)
        if count != 1:
            raise PlantingError(f"{self.file}: expected the snippet once, found it {count} times: "
                                f"{self.old.strip()[:80]!r}")
        # The copy is named by the edit and by every kernel source it copies: a copy made
        # from older sources (an earlier checkout) is never reused.
        digest = hashlib.sha256((self.file + "\0" + self.old + "\0" + self.new).encode())
        for name in sorted(os.listdir(source_dir)):
            with open(os.path.join(source_dir, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
        target = os.path.join(tempfile.gettempdir(),
                              f"conformance-mutant-kernels-{digest.hexdigest()[:16]}")
        if not os.path.isdir(target):
            staging = tempfile.mkdtemp(prefix="conformance-mutant-")
            for name in os.listdir(source_dir):
                shutil.copy(os.path.join(source_dir, name), staging)
            with open(os.path.join(staging, self.file), "w") as f:
                f.write(text.replace(self.old, self.new))
            try:
                os.replace(staging, target)
            except OSError:  # another process planted the same mutant first
                shutil.rmtree(staging, ignore_errors=True)
        cpu.KERNEL_DIR = target


@dataclass(frozen=True)
class PythonPatch:
    """Replace `attribute` of `owner` (a dotted path into fast) by what `make(original)` returns."""
    owner: str
    attribute: str
    make: object

    def plant(self) -> None:
        import importlib
        module_name, _, class_path = self.owner.partition(":")
        owner = importlib.import_module(module_name)
        for part in filter(None, class_path.split(".")):
            owner = getattr(owner, part)
        if not hasattr(owner, self.attribute):
            raise PlantingError(f"{self.owner} has no attribute {self.attribute!r}")
        original = owner.__dict__.get(self.attribute, getattr(owner, self.attribute))
        setattr(owner, self.attribute, self.make(original))
