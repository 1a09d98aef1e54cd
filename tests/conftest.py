"""Shared fixtures: small Hugging Face GPT-2 checkpoints (the outside oracle) and the backend matrix."""

from __future__ import annotations

import os
import tempfile

import pytest

# Eight simulated CPU devices for the sharding tests (tests/test_sharding.py), set before anything starts
# JAX; single-device tests use the first. A caller's own XLA_FLAGS wins.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# Keep tests away from the user's cache and from tiktoken's download cache.
_SESSION_TMP = tempfile.mkdtemp(prefix="arraygpt-tests-")
os.environ.setdefault("ARRAYGPT_CACHE", os.path.join(_SESSION_TMP, "cache"))
os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(_SESSION_TMP, "tiktoken")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import BACKEND_CASES, backend_or_skip, make_hf_model, save_bare_variant  # noqa: E402


@pytest.fixture(params=BACKEND_CASES, ids=[f"{b}-{d or 'default'}" for b, d in BACKEND_CASES])
def backend(request):
    name, device = request.param
    return backend_or_skip(name, device)


@pytest.fixture(scope="session")
def hf_model():
    return make_hf_model()


@pytest.fixture(scope="session", params=["prefixed", "bare"])
def hf_checkpoint(request, hf_model, tmp_path_factory):
    """(directory, HF model) in both naming variants seen in the wild."""
    directory = tmp_path_factory.mktemp(f"hf-{request.param}")
    if request.param == "prefixed":
        hf_model.save_pretrained(directory, safe_serialization=True)  # what save_pretrained writes
    else:
        save_bare_variant(hf_model, directory)
    return directory, hf_model


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory, hf_model):
    directory = tmp_path_factory.mktemp("hf-small")
    hf_model.save_pretrained(directory, safe_serialization=True)
    return directory




def pytest_collection_modifyitems(items):
    """`pytest -m gpu` (the GPU check's tests): every case whose id names a GPU device or CuPy."""
    for item in items:
        if "gpu" in item.nodeid or "cupy" in item.nodeid or "cuda" in item.nodeid:
            item.add_marker(pytest.mark.gpu)
