"""Fixtures of the engine's unit tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(params=["numpy", "strict"])
def xp(request):
    """The namespace the forward pass's functions are fed: NumPy, and array-api-strict (the standard only)."""
    if request.param == "numpy":
        return np
    return pytest.importorskip("array_api_strict")
