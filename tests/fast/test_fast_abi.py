"""The Python side and the C++ kernels agree on every number they share (fast.backends.abi).

The header fast/kernels/abi.h is written from the table and checked in: it must be the
table's, and every build refuses one that is not. Its layout asserts compare the C struct
``FastStepArgs`` with its ctypes mirror field by field as any build compiles; here they are
shown to fail on a struct that differs. A probe compiled against the kernel headers reports
what each kernel id and mode number means to C++ (the rule's state count; the mode's
parameter, state and hook dtypes and its master), and the engine's groups are compared with
it for every optimizer, dtype mode and profile. About 3 s on the 2-core CI machine (two g++
runs)."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from fast.backends import abi, abi_header, cpu, nvrtc
from fast.engine import hook_dtype

from fast_testkit import DTYPE_MODES, OPTIMIZER_NAMES, PROFILES, make_optimizer


def compile_cxx(directory, source, *flags):
    """The C++ compiler on ``source`` in ``directory`` with ``flags``: the completed process."""
    command = [os.environ.get("CXX") or "g++", "-std=c++17", "-march=native", *flags, source]
    return subprocess.run(command, cwd=directory, capture_output=True, text=True)


def test_the_checked_in_header_is_the_tables():
    with open(abi_header.HEADER_PATH) as f:
        assert f.read() == abi_header.header_text()
    assert abi_header.main([]) == 0


def test_every_build_refuses_a_header_that_is_not_the_tables(tmp_path, monkeypatch):
    edited = tmp_path / "kernels"
    shutil.copytree(cpu.KERNEL_DIR, edited)
    header = edited / abi_header.HEADER
    header.write_text(header.read_text().replace("HOOK_CLIP = 3,", "HOOK_CLIP = 9,"))
    with pytest.raises(abi_header.AbiMismatchError, match="python -m fast.backends.abi_header --write"):
        cpu.built_library("fastkernels", cpu.SOURCES, cpu.FLAGS, str(edited))
    monkeypatch.setattr(cpu, "KERNEL_DIR", str(edited))
    with pytest.raises(abi_header.AbiMismatchError):
        nvrtc.build(["fast_check_kernel<ModeF32>"], arch="sm_90", cache=False)
    monkeypatch.setattr(abi_header, "HEADER_PATH", str(header))
    assert abi_header.main([]) == 1


def test_the_layout_asserts_compare_every_field_with_ctypes(tmp_path):
    text = abi_header.header_text()
    assert re.findall(r"^FAST_AT\((\w+), (\d+)\);$", text, re.M) == [
        (field.name, str(getattr(abi.StepArgs, field.name).offset)) for field in abi.STEP_ARGS_FIELDS]
    assert [name for name, _ in abi.StepArgs._fields_] == [field.name for field in abi.STEP_ARGS_FIELDS]
    (tmp_path / "abi.h").write_text(text)
    assert compile_cxx(tmp_path, "abi.h", "-fsyntax-only").returncode == 0
    # the C side of one field changed, its ctypes mirror not: the build stops at the next field
    (tmp_path / "abi.h").write_text(text.replace("    int32_t unscale; ", "    int64_t unscale; "))
    failed = compile_cxx(tmp_path, "abi.h", "-fsyntax-only")
    assert failed.returncode != 0 and "FastStepArgs::unscale_first" in failed.stderr


PROBE = r"""
#include <cstdio>
#include "update_math.h"
#include "element_pipeline.h"
int main() {
#define RULE(ID, RULE) std::printf("rule %d %s %d\n", ID, #RULE, RULE::n_state);
    FAST_FOR_EACH_RULE(RULE)
#define MODE(NUMBER, MODE) std::printf("mode %d %s %d %d %d %d\n", NUMBER, #MODE, (int)sizeof(MODE::P), \
                                       (int)sizeof(MODE::S), (int)sizeof(MODE::H), (int)MODE::MASTER);
    FAST_FOR_EACH_MODE(MODE)
}
"""


@pytest.fixture(scope="module")
def kernels_say(tmp_path_factory):
    """{"rule": {id: (struct, n_state)}, "mode": {number: (type, P, S, H bytes, master)}}, as
    the kernel headers compile them."""
    directory = tmp_path_factory.mktemp("probe")
    for name in os.listdir(cpu.KERNEL_DIR):
        shutil.copy(os.path.join(cpu.KERNEL_DIR, name), directory)
    (directory / "probe.cpp").write_text(PROBE)
    built = compile_cxx(directory, "probe.cpp", "-o", "probe")
    assert built.returncode == 0, built.stderr
    said = {"rule": {}, "mode": {}}
    for line in subprocess.run([str(directory / "probe")], capture_output=True, text=True, check=True).stdout.split("\n"):
        if line:
            kind, number, name, *values = line.split()
            said[kind][int(number)] = (name, *map(int, values))
    return said


def test_the_kernels_number_what_python_names(kernels_say):
    assert {k: v[0] for k, v in kernels_say["rule"].items()} == dict(enumerate(abi.RULES))
    assert {k: v[0] for k, v in kernels_say["mode"].items()} == abi.MODES
    assert all(n <= abi.MAX_STATE for _, n in kernels_say["rule"].values())


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", sorted(DTYPE_MODES))
def test_every_group_runs_a_kernel_of_its_layout(kernels_say, mode, profile):
    """Each engine group's kernel keeps as many state arrays as the group holds, and its mode
    stores the parameter, state and master as the group does and hooks in the dtype the
    engine plans the hooks for."""
    kernels_seen = set()
    for name in OPTIMIZER_NAMES:
        opt, _ = make_optimizer(name, mode, profile)
        for g in opt.engine.groups:
            struct, n_state = kernels_say["rule"][g.kernel_id]
            kernels_seen.add(struct)
            assert n_state == len(g.state), (name, struct)
            mode_type, p_bytes, s_bytes, h_bytes, master = kernels_say["mode"][g.mode]
            assert (p_bytes, s_bytes, bool(master)) == (
                g.param.dtype.itemsize, g.state_dtype.itemsize, g.master is not None), (name, mode_type)
            assert h_bytes == np.dtype(hook_dtype(g.mode, g.dtype)).itemsize, (name, mode_type)
    assert kernels_seen == set(abi.RULES)
