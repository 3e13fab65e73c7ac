"""The GPU build, checked without a GPU: every kernel instance compiles with NVRTC for
sm_80 and sm_90 with the project's flags, its PTX keeps the IEEE contract the CPU build and
the reference assume, and no kernel spills. NVRTC and cuda_fp16.h come from the `gpu` extra,
which `make test` installs: a missing NVRTC fails here, it is not skipped.

The two full builds take about 20 s each on the 2-core CI machine and are cached on disk
(fast/_build), keyed by source, flags, architecture and NVRTC version."""
import os
import shutil

import pytest

from fast.backends import abi, cpu, cuda, nvrtc

ARCHS = ("sm_80", "sm_90")
ONE_KERNEL = ["fast_update_kernel<RuleAdam, ModeF16Master>"]


@pytest.fixture(scope="module", params=ARCHS)
def build(request):
    return cuda.build(request.param)


def test_every_instance_compiles_into_the_cubin(build):
    names = [name for _, name in cuda.instantiations()]
    _, entries = nvrtc.split_ptx(build.ptx)
    assert sorted(build.lowered_names) == sorted(names)
    assert sorted(entries) == sorted(build.lowered_names.values())
    assert build.cubin[:4] == b"\x7fELF"
    assert len(names) == len(abi.RULES) * len(abi.MODES) + 3 * len(abi.MODES) + 1 == 86


def test_the_ptx_keeps_the_ieee_contract(build):
    """No flush to zero, no fma (the CPU build has none: -ffp-contract=off and no fma call in
    the kernel sources), no approximate division or square root, and every float add, sub
    and mul carries its rounding mode, so ptxas may not contract it either."""
    assert "-ffp-contract=off" in cpu.FLAGS
    for name in nvrtc.HEADERS + (nvrtc.TRANSLATION_UNIT, "cpu_driver.cpp"):
        with open(os.path.join(cpu.KERNEL_DIR, name)) as f:
            assert "fma(" not in f.read(), name
    assert nvrtc.ieee_violations(build.ptx) == {}
    assert "div.rn.f32" in build.ptx and "sqrt.rn.f32" in build.ptx


def test_no_kernel_spills_to_local_memory(build):
    resources = build.resources()
    assert sorted(resources) == sorted(build.lowered_names)
    spilling = {name: r for name, r in resources.items() if r.spill_stores or r.spill_loads}
    assert spilling == {}
    assert cuda.contract_problems(build) == []


def test_the_reduction_declares_its_shared_tree(build):
    """ptxas's log is parsed for what it says: the reduce kernels hold two 256-double trees."""
    shared = {name: r.shared_memory for name, r in build.resources().items()}
    assert {v for k, v in shared.items() if k.startswith("fast_reduce_kernel")} == {2 * 256 * 8}
    assert {v for k, v in shared.items() if k.startswith("fast_update_kernel")} == {0}


def test_nvrtc_gets_exactly_the_project_flags(monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def compile_program(program, options):
        seen.append(list(options))
        raise Stop
    monkeypatch.setattr(nvrtc._nvrtc(), "compileProgram", compile_program)
    with pytest.raises(Stop):
        nvrtc.build(ONE_KERNEL, arch="sm_90", cache=False)
    assert seen == [list(nvrtc.FLAGS) + ["-arch=sm_90", "-I" + nvrtc.cuda_include_dir(), "-Xptxas", "-v"]]
    assert {"-ftz=false", "--fmad=false", "--prec-div=true", "--prec-sqrt=true"} <= set(nvrtc.FLAGS)


def test_the_contract_check_sees_flush_to_zero_and_contraction():
    """The negative control: the flags CuPy's own compile path would use (-ftz=true appended,
    NVRTC's default --fmad=true) produce exactly what the checks above reject."""
    lax = nvrtc.build(ONE_KERNEL, arch="sm_90", extra_flags=("-ftz=true", "--fmad=true"), cache=False)
    violations = nvrtc.ieee_violations(lax.ptx)
    assert violations["ftz"] > 0 and violations["fma"] > 0
    strict = nvrtc.build(ONE_KERNEL, arch="sm_90", cache=False)
    assert nvrtc.ieee_violations(strict.ptx) == {}


def test_a_kernel_that_does_not_compile_fails_the_build(monkeypatch, tmp_path):
    broken = tmp_path / "kernels"
    shutil.copytree(cpu.KERNEL_DIR, broken)
    path = broken / "update_math.h"
    text = path.read_text()
    assert text.count("T step = hp[2] / (fast_sqrt(vhat) + hp[3]);") == 1
    path.write_text(text.replace("T step = hp[2] /", "T step = undefined_g /"))
    monkeypatch.setattr(cpu, "KERNEL_DIR", str(broken))
    with pytest.raises(nvrtc.GpuBuildError, match="undefined_g"):
        nvrtc.build(ONE_KERNEL, arch="sm_90", cache=False)


def test_builds_are_cached_by_source_flags_and_arch(monkeypatch, tmp_path):
    monkeypatch.setenv("FAST_KERNEL_CACHE", str(tmp_path))
    first = nvrtc.build(ONE_KERNEL, arch="sm_90")
    files = os.listdir(tmp_path)
    assert len(files) == 1

    def no_compile(*args):
        raise AssertionError("compiled again instead of using the cache")
    monkeypatch.setattr(nvrtc, "_compile", no_compile)
    again = nvrtc.build(ONE_KERNEL, arch="sm_90")
    assert again.cubin == first.cubin and again.lowered_names == first.lowered_names
    for other in ({"arch": "sm_80"}, {"arch": "sm_90", "extra_flags": ("-DFAST_UNUSED=1",)},
                  {"arch": "compute_90"}):
        with pytest.raises(AssertionError, match="compiled again"):
            nvrtc.build(ONE_KERNEL, **other)
    edited = tmp_path / "kernels"
    shutil.copytree(cpu.KERNEL_DIR, edited)
    (edited / "element_pipeline.h").write_text((edited / "element_pipeline.h").read_text() + "\n// edited\n")
    monkeypatch.setattr(cpu, "KERNEL_DIR", str(edited))
    with pytest.raises(AssertionError, match="compiled again"):
        nvrtc.build(ONE_KERNEL, arch="sm_90")


def test_a_corrupt_cache_entry_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("FAST_KERNEL_CACHE", str(tmp_path))
    good = nvrtc.build(ONE_KERNEL, arch="sm_90")
    (entry,) = tmp_path.iterdir()
    entry.write_text(entry.read_text()[:1000])
    rebuilt = nvrtc.build(ONE_KERNEL, arch="sm_90")
    assert rebuilt.cubin == good.cubin
    assert nvrtc._load_cached(str(entry)).cubin == good.cubin


def test_a_compute_arch_builds_ptx_only():
    ptx_only = nvrtc.build(ONE_KERNEL, arch="compute_90", cache=False)
    assert ptx_only.cubin is None and ".target sm_90" in ptx_only.ptx
    assert nvrtc.ieee_violations(ptx_only.ptx) == {}


@pytest.mark.parametrize("arch", ["sm90", "90", "sm_9x", ""])
def test_a_malformed_arch_is_refused(arch):
    with pytest.raises(ValueError, match="sm_90 or compute_90"):
        nvrtc.build(ONE_KERNEL, arch=arch, cache=False)


def test_an_arch_nvrtc_does_not_know_is_refused_by_name():
    with pytest.raises(nvrtc.GpuBuildError, match="cannot build for sm_10"):
        nvrtc.build(ONE_KERNEL, arch="sm_10", cache=False)


def test_device_arch_prefers_the_device_cubin_and_falls_back_to_older_ptx():
    supported = (75, 80, 86, 90, 100, 120)
    assert nvrtc.device_arch("90", supported) == "sm_90"
    assert nvrtc.device_arch("89", supported) == "compute_86"
    assert nvrtc.device_arch("130", supported) == "compute_120"
    with pytest.raises(nvrtc.GpuBuildError, match="compute capability 70"):
        nvrtc.device_arch("70", supported)


def test_the_ptx_command_writes_every_instance_and_its_resources(tmp_path, capsys):
    assert cuda.main(["--ptx", str(tmp_path), "--arch", "sm_90"]) == 0
    out = capsys.readouterr().out
    module = (tmp_path / "cuda_driver.sm_90.ptx").read_text()
    assert nvrtc.ieee_violations(module) == {}
    kernels = sorted((tmp_path / "sm_90").iterdir())
    assert len(kernels) == len(cuda.instantiations())
    for path in kernels:
        text = path.read_text()
        assert text.startswith("//") and ".target sm_90" in text and text.count(".entry ") == 1, path
    assert out.count("| `fast_") == len(cuda.instantiations())
    assert "| `fast_update_kernel<RuleAdam, ModeF16Master>` |" in out
    assert "PTX: 0 .ftz, 0 fma" in out and "CONTRACT" not in out


def test_the_ptx_command_refuses_a_bad_arch(tmp_path, capsys):
    assert cuda.main(["--ptx", str(tmp_path), "--arch", "volta"]) == 2
    assert "sm_90 or compute_90" in capsys.readouterr().err


def test_the_register_table_in_docs_is_the_build():
    """docs/fast.md's per-kernel table lists every instance; its figures are the build's when
    NVRTC is the version the table names (another NVRTC may allocate registers differently)."""
    import re
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "fast.md")) as f:
        doc = f.read()
    documented_version = tuple(map(int, re.search(r"Per kernel, NVRTC (\d+)\.(\d+)", doc).groups()))
    rows = {m.group(1): tuple(int(x) for x in m.group(2, 3, 4, 5))
            for m in re.finditer(r"^\| `([^`]+)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", doc, re.M)}
    assert sorted(rows) == sorted(name for _, name in cuda.instantiations())
    if nvrtc.nvrtc_version() != documented_version:
        pytest.skip(f"the table is NVRTC {documented_version}'s; this is {nvrtc.nvrtc_version()}")
    sm90, sm80 = cuda.build("sm_90").resources(), cuda.build("sm_80").resources()
    for name, (registers_90, registers_80, spills, shared) in rows.items():
        assert (registers_90, registers_80, spills, shared) == (
            sm90[name].registers, sm80[name].registers, 0, sm90[name].shared_memory), name
