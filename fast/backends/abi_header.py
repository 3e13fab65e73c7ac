"""fast/kernels/abi.h, the C++ face of the table in fast.backends.abi: written from it,
checked in, and checked against it by every build.

The header is checked in so that the kernel sources read as plain C++:

- the rule and mode dispatches of the kernels expand ``FAST_FOR_EACH_RULE`` and
  ``FAST_FOR_EACH_MODE``, the table's lists;
- the header asserts, at compile time, the size of ``FastStepArgs`` and the offset of each
  of its fields as ctypes lays out ``abi.StepArgs``, so the CPU build, the NVRTC build and
  the CUDA host emulator each compare the layout as they compile;
- every build refuses a header that is not the table's (``check_header``), so a library is
  never built from numbers the Python side does not use.

``python -m fast.backends.abi_header`` exits 1 when the checked-in header differs from the
table; ``--write`` writes it.
"""
import argparse
import ctypes
import os
import sys

from fast.backends.abi import (DTYPES, FIRST_HOOK_KIND, HOOK_KINDS, LAUNCH_KINDS, MAX_STATE, MODES, N_HPARAMS, RULES,
                               STEP_ARGS_DOC, STEP_ARGS_FIELDS, StepArgs)

#: The header's name in fast's kernel directory, and its path there.
HEADER = "abi.h"
HEADER_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels", HEADER)


class AbiMismatchError(RuntimeError):
    """A kernel build was given an abi.h that is not the one the table writes."""


def _x_macro(name, what, pairs):
    lines = ["// {}(X): X({}) for each of them".format(name, what), "#define {}(X) \\".format(name)]
    lines += ["    X({}, {}){}".format(number, cpp, " \\" if k + 1 < len(pairs) else "")
              for k, (number, cpp) in enumerate(pairs)]
    return lines


def _enum(name, comment, entries, first):
    """``enum name { cpp = number, ... };`` of (cpp, doc) entries numbered from ``first``,
    with each doc as a comment."""
    items = ["{} = {},".format(cpp, first + k) for k, (cpp, _) in enumerate(entries)]
    width = max(len(item) for item in items)
    lines = ["// " + comment, "enum {} {{".format(name)]
    lines += ["    {:<{}}  // {}".format(item, width, doc) for item, (_, doc) in zip(items, entries)]
    return lines + ["};"]


def _step_args():
    width = max(len(field.declaration()) for field in STEP_ARGS_FIELDS)
    lines = ["// " + line for line in STEP_ARGS_DOC] + ["struct FastStepArgs {"]
    for field in STEP_ARGS_FIELDS:
        text = "    {:<{}}".format(field.declaration(), width)
        lines.append((text + "  // " + field.doc) if field.doc else text.rstrip())
    lines.append("};")
    lines.append("// Each field at the offset ctypes gives it in fast.backends.abi.StepArgs:")
    lines.append('static_assert(sizeof(FastStepArgs) == {}, "FastStepArgs differs in size from its ctypes '
                 'mirror");'.format(ctypes.sizeof(StepArgs)))
    lines.append('#define FAST_AT(field, offset) static_assert(__builtin_offsetof(FastStepArgs, field) == offset, '
                 '"FastStepArgs::" #field " is not where its ctypes mirror has it")')
    lines += ["FAST_AT({}, {});".format(field.name, getattr(StepArgs, field.name).offset)
              for field in STEP_ARGS_FIELDS]
    lines.append("#undef FAST_AT")
    return lines


def header_text():
    """The text of fast/kernels/abi.h, as the table of fast.backends.abi makes it."""
    lines = [
        "// Written by `python -m fast.backends.abi_header --write` from the table in fast/backends/abi.py,",
        "// which the Python side reads: edit the table, not this file (every build refuses a header",
        "// that is not the table's; tests/fast/test_fast_abi.py compares them).",
        "#ifndef FAST_ABI_H",
        "#define FAST_ABI_H",
        "#if defined(__CUDACC_RTC__)",
        "typedef long long int64_t;",
        "typedef int int32_t;",
        "typedef unsigned char uint8_t;",
        "#else",
        "#include <stdint.h>",
        "#endif",
        "",
        "// The most state arrays an update rule keeps (Rule::n_state).",
        "#define FAST_MAX_STATE {}".format(MAX_STATE),
        "// The scalars of one tensor's row of FastStepArgs::hparams.",
        "#define FAST_N_HPARAMS {}".format(N_HPARAMS),
        "",
    ]
    lines += _x_macro("FAST_FOR_EACH_RULE", "kernel id, rule struct of update_math.h",
                      list(enumerate(RULES)))
    lines.append("")
    lines += _x_macro("FAST_FOR_EACH_MODE", "mode number, Mode type of element_pipeline.h",
                      sorted(MODES.items()))
    lines.append("")
    lines += _enum("FastHookKind", "The elementwise optimizer-hook ops of update_math.h's apply_hook.",
                   HOOK_KINDS, FIRST_HOOK_KIND)
    lines.append("")
    lines += _enum("FastLaunchKind", "The kernels cuda_emulator.cpp's fast_emu_launch runs.", LAUNCH_KINDS, 0)
    lines.append("")
    lines += _enum("FastDtype", "The dtypes of exchange.cpp's passes (fast.distributed's exchange buffers).",
                   DTYPES, 0)
    lines.append("")
    lines += _step_args()
    lines += ["#endif  // FAST_ABI_H", ""]
    return "\n".join(lines)


def check_header(text):
    """Raise AbiMismatchError unless ``text`` (an abi.h about to be compiled) is the header
    the table writes."""
    if text != header_text():
        raise AbiMismatchError(
            "fast/kernels/abi.h is not the header of the table in fast/backends/abi.py, which the "
            "Python side uses: write it again with `python -m fast.backends.abi_header --write`")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.backends.abi_header",
                                     description="Check fast/kernels/abi.h against the table of "
                                                 "fast.backends.abi (exit 1 when they differ), or write it.")
    parser.add_argument("--write", action="store_true", help="write the header from the table")
    args = parser.parse_args(argv)
    if args.write:
        with open(HEADER_PATH, "w") as f:
            f.write(header_text())
        print("wrote " + HEADER_PATH)
        return 0
    with open(HEADER_PATH) as f:
        same = f.read() == header_text()
    print("{} {} the table".format(HEADER_PATH, "matches" if same else "differs from"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
