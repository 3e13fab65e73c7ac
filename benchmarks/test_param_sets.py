"""The parameter sets and the bytes table are what the benchmarks claim they are."""

import math

import pytest

from .bytes_per_param import STATE_ARRAYS, bytes_per_param
from .param_sets import EXPECTED_MODEL_TOTALS, MODELS, flat, resnet50


@pytest.mark.parametrize("name", sorted(EXPECTED_MODEL_TOTALS))
def test_model_totals(name):
    model = MODELS[name]
    assert (model.n_arrays, model.n_params) == EXPECTED_MODEL_TOTALS[name]


def test_resnet50_layout():
    shapes = resnet50().shapes
    assert shapes[:3] == ((64, 3, 7, 7), (64,), (64,))
    assert shapes[-2:] == ((1000, 2048), (1000,))
    assert max(shapes, key=math.prod) == (512, 512, 3, 3)
    assert shapes.count((512, 512, 3, 3)) == 3  # one per block of the last stage
    assert sum(len(shape) == 4 for shape in shapes) == 53  # 1 + 16 * 3 + 4 projections


def test_flat_names_and_sizes():
    assert flat(16_000_000).name == "flat-16M"
    assert flat(16_000_000).n_params == 16_000_000
    with pytest.raises(ValueError, match="positive"):
        flat(0)


def test_design_table():
    assert [bytes_per_param(o, "fp16+master") for o in ("SGD", "AdaGrad", "Adam", "SMORMS3")] \
        == [12, 20, 28, 36]
    assert bytes_per_param("AdamW", "fp32") == 28
    assert bytes_per_param("AdamW", "fp16") == 14
    assert len(STATE_ARRAYS) == 15
    with pytest.raises(KeyError, match="unknown dtype mode"):
        bytes_per_param("Adam", "bf16")
