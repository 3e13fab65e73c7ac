"""Fixtures for the tests of the `reference` package."""
import pytest

from .helpers import PROFILES


@pytest.fixture(params=PROFILES)
def profile(request):
    """Both semantics profiles, for behaviour that must not depend on them."""
    return request.param
