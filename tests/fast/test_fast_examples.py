"""The training examples shown in the README run and learn, so they cannot rot."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_numpy_example_loss_drops_substantially(mixed_precision, tmp_path):
    checkpoint = tmp_path / "example.npz"
    losses = load_example("train_numpy").main(steps=200, mixed_precision=mixed_precision,
                                              checkpoint=str(checkpoint))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0]
    with np.load(checkpoint) as archive:
        assert int(archive["t"]) == len(losses)


def test_chainer_example_loss_drops_substantially():
    pytest.importorskip("chainer")
    losses = load_example("train_chainer").main()
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.25 * losses[0]


@pytest.mark.parametrize("name", ["train_numpy", "train_chainer"])
def test_training_guide_shows_the_examples_verbatim(name):
    guide = (EXAMPLES.parent / "docs" / "training.md").read_text()
    source = (EXAMPLES / f"{name}.py").read_text().rstrip()
    assert f"```python\n{source}\n```" in guide
