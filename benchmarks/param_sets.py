"""Parameter sets the benchmarks run on, kept as data.

A parameter set is a name and the list of array shapes an optimizer updates: one flat
tensor (1M, 16M, 100M elements), or the parameter arrays of a real model, generated here
from each model's published architecture (no model library is imported):

- ResNet-50 (torchvision layout: convolutions without bias, batch-norm scale and shift,
  a 1000-way classifier): 161 arrays, 25,557,032 parameters.
- BERT-base (uncased, encoder and pooler, no task head): 199 arrays, 109,482,240.
- GPT-2 small (tied embedding, no separate LM head): 148 arrays, 124,439,808.

Each model's totals are checked when this module is imported, so a wrong shape cannot
silently change what a benchmark measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ParamSet:
    """A named list of parameter shapes."""

    name: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def n_arrays(self) -> int:
        return len(self.shapes)

    @property
    def n_params(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)


def flat(n_params: int) -> ParamSet:
    """One flat tensor of `n_params` elements, named by its size (flat-16M)."""
    if n_params <= 0:
        raise ValueError(f"a flat parameter set needs a positive size, got {n_params}")
    return ParamSet(f"flat-{_short_count(n_params)}", ((n_params,),))


def _short_count(n: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def _batch_norm(channels: int) -> list[tuple[int, ...]]:
    return [(channels,), (channels,)]


def _conv(out_channels: int, in_channels: int, kernel: int) -> tuple[int, ...]:
    return (out_channels, in_channels, kernel, kernel)


def resnet50() -> ParamSet:
    """ResNet-50: a 7x7 stem, four stages of bottleneck blocks (3, 4, 6, 3 blocks of
    width 64, 128, 256, 512, expansion 4), a projection shortcut on each stage's first
    block, and a 2048 -> 1000 classifier."""
    shapes: list[tuple[int, ...]] = [_conv(64, 3, 7), *_batch_norm(64)]
    in_channels = 64
    for n_blocks, width in ((3, 64), (4, 128), (6, 256), (3, 512)):
        out_channels = 4 * width
        for block in range(n_blocks):
            shapes += [_conv(width, in_channels, 1), *_batch_norm(width)]
            shapes += [_conv(width, width, 3), *_batch_norm(width)]
            shapes += [_conv(out_channels, width, 1), *_batch_norm(out_channels)]
            if block == 0:
                shapes += [_conv(out_channels, in_channels, 1), *_batch_norm(out_channels)]
            in_channels = out_channels
    shapes += [(1000, 2048), (1000,)]
    return ParamSet("resnet50", tuple(shapes))


def _linear(n_in: int, n_out: int) -> list[tuple[int, ...]]:
    return [(n_out, n_in), (n_out,)]


def bert_base() -> ParamSet:
    """BERT-base: vocabulary 30522, 512 positions, 2 token types, hidden 768, 12 layers
    with an intermediate size of 3072, layer norms with scale and shift, and the pooler."""
    hidden, ffn, layers = 768, 3072, 12
    shapes: list[tuple[int, ...]] = [(30522, hidden), (512, hidden), (2, hidden)]
    shapes += [(hidden,), (hidden,)]
    for _ in range(layers):
        for _projection in ("query", "key", "value", "attention output"):
            shapes += _linear(hidden, hidden)
        shapes += [(hidden,), (hidden,)]
        shapes += _linear(hidden, ffn) + _linear(ffn, hidden)
        shapes += [(hidden,), (hidden,)]
    shapes += _linear(hidden, hidden)
    return ParamSet("bert-base", tuple(shapes))


def gpt2_small() -> ParamSet:
    """GPT-2 small: vocabulary 50257, 1024 positions, width 768, 12 blocks (layer norm,
    fused QKV projection, output projection, layer norm, 4x MLP), a final layer norm; the
    output layer shares the token embedding."""
    width, layers = 768, 12
    shapes: list[tuple[int, ...]] = [(50257, width), (1024, width)]
    for _ in range(layers):
        shapes += [(width,), (width,)]
        shapes += [(width, 3 * width), (3 * width,)]
        shapes += [(width, width), (width,)]
        shapes += [(width,), (width,)]
        shapes += [(width, 4 * width), (4 * width,)]
        shapes += [(4 * width, width), (width,)]
    shapes += [(width,), (width,)]
    return ParamSet("gpt2-small", tuple(shapes))


# The published totals each generated model must reproduce: (arrays, parameters).
EXPECTED_MODEL_TOTALS = {
    "resnet50": (161, 25_557_032),
    "bert-base": (199, 109_482_240),
    "gpt2-small": (148, 124_439_808),
}

MODELS = {p.name: p for p in (resnet50(), bert_base(), gpt2_small())}


def _check_model_totals() -> None:
    for name, (n_arrays, n_params) in EXPECTED_MODEL_TOTALS.items():
        got = MODELS[name]
        if (got.n_arrays, got.n_params) != (n_arrays, n_params):
            raise AssertionError(
                f"{name}: generated {got.n_arrays} arrays / {got.n_params} parameters, "
                f"expected {n_arrays} / {n_params}"
            )


_check_model_totals()
