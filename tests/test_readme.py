"""The README's claims that code can check: the example it shows, the quirks it lists."""

import pathlib

from reference.profiles import QUIRKS

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_shows_the_numpy_training_example_verbatim():
    source = (ROOT / "examples" / "train_numpy.py").read_text().rstrip()
    assert f"```python\n{source}\n```" in README


def test_readme_quirks_table_is_reference_profiles_quirks():
    for what, where, fixed in QUIRKS:
        assert f"| {what} | `{where}` | {fixed} |" in README, what


def test_readme_names_both_commands():
    assert "make run" in README and "make test" in README


def test_readme_shows_both_ways_of_gating_the_example_implementation():
    assert "python -m conformance gate --impl examples.my_adam --filter Adam" in README
    assert "python -m pytest --conformance-impl=examples.my_adam -k Adam examples" in README
