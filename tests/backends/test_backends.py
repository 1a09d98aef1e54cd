"""The registry and adapters: unusable backends and dtypes fail with a reason, never a traceback."""

from __future__ import annotations

import importlib.util

import pytest

from arraygpt.backends import BackendError, BackendUnavailable, backend_status, get_backend


def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend 'tpu-magic'.*numpy"):
        get_backend("tpu-magic")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_cupy_without_cupy_says_how_to_install():
    with pytest.raises(BackendUnavailable, match=r"cupy is not installed; pip install 'arraygpt\[cuda12\]'"):
        get_backend("cupy")


def test_cupy_without_a_gpu_says_so():
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except ImportError:
        pytest.skip("cupy is not installed (its missing-package path is tested above)")
    except Exception:
        with pytest.raises(BackendUnavailable, match="no usable CUDA GPU or driver"):
            get_backend("cupy")
        return
    pytest.skip("a CUDA GPU is present")


def test_jax_gpu_where_jax_has_only_a_cpu():
    jax = pytest.importorskip("jax")
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX has a GPU here")
    with pytest.raises(BackendUnavailable, match="JAX has no gpu device here.*cpu.*pip install 'jax\\[cuda12\\]'"):
        get_backend("jax", device="gpu")


@pytest.mark.parametrize("name, dtype, match", [
    ("numpy", "bfloat16", "numpy' has no bfloat16"),
    ("strict", "float16", "strict' has no float16"),
    ("numpy", "float8", "unknown dtype 'float8'"),
])
def test_missing_dtypes_are_clear_errors(name, dtype, match):
    with pytest.raises(BackendError, match=match):
        get_backend(name).dtype(dtype)


def test_bad_device_names():
    with pytest.raises(BackendError, match="unknown device 'gpu:x'"):
        get_backend("jax", device="gpu:x")
    with pytest.raises(BackendError, match="numpy' runs on the cpu only"):
        get_backend("numpy", device="gpu")


def test_status_lists_every_backend_without_raising():
    rows = {name: (ok, detail) for name, ok, detail in backend_status()}
    assert set(rows) == {"numpy", "jax", "jax-loop", "torch", "torch-eager", "torch-inductor", "cupy", "cupy-eager", "strict"}
    assert rows["numpy"][0] is True
    for ok, detail in rows.values():
        assert ok or detail  # an unusable backend always says why


def test_each_backends_declared_dtypes_are_those_its_library_has():
    """The registry declares dtypes (the bench refuses a backend x dtype up front from it); the adapter, where it
    can be made here, must agree."""
    from arraygpt.backends import BACKENDS, BackendError, get_backend
    from arraygpt.backends.base import DTYPE_NAMES
    checked = 0
    for name, registered in BACKENDS.items():
        try:
            backend = get_backend(name)
        except BackendError:
            continue
        for dtype in DTYPE_NAMES:
            try:
                backend.dtype(dtype)
                has = True
            except BackendError:
                has = False
            assert has == (dtype in registered.dtypes), (name, dtype)
        checked += 1
    assert checked >= 3
