"""Primitives a backend declares (engine.layers.Primitives: LayerNorm, RMSNorm, GELU, SiLU, softmax as one
library kernel each) compute the engine's functions: against formulas in NumPy float64, on every backend case that declares
any, and a forward pass calls each declared one where the engine would call its own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from arraygpt.engine import families, gpt2, layers

RNG = np.random.default_rng(3)
TOLERANCE = {"float32": 3e-6, "bfloat16": 2e-2, "float16": 2e-3}  # relative to the largest value


def reference(name, x, g=None, b=None):  # NumPy float64
    if name == "gelu":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    if name == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "rms_norm":
        return g * x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)
    return g * (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) + b


def declared(backend) -> list[str]:
    return [name for name in ("layer_norm", "rms_norm", "gelu", "silu", "softmax")
            if getattr(backend, name, None) is not None]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_declared_primitives_compute_the_engines_functions(backend, dtype):
    names = declared(backend)
    if not names:
        pytest.skip(f"{backend.name} declares no primitive of its own: the engine's run")
    from arraygpt.backends import BackendError
    try:
        backend.dtype(dtype)
    except BackendError as err:
        pytest.skip(str(err))
    x, g, b = RNG.normal(size=(3, 5, 64)) * 3, RNG.normal(size=64), RNG.normal(size=64)
    x[0, 0] += 400  # softmax must take the maximum away (exp(400) overflows float32)
    for name in names:
        fn = getattr(backend, name)
        args = {"layer_norm": [x, g, b], "rms_norm": [x, g]}.get(name, [x])
        # the reference reads the inputs as rounded to dtype, so only the computation's error is measured
        xp = backend.xp
        arrays = [xp.astype(xp.asarray(np.asarray(a, dtype=np.float32), device=backend.device), backend.dtype(dtype))
                  for a in args]
        rounded = [backend.to_host(a).astype(np.float64) for a in arrays]
        out = fn(*arrays, 1e-5) if name.endswith("_norm") else fn(*arrays)
        assert out.dtype == arrays[0].dtype and out.shape == arrays[0].shape, name  # the activations' dtype
        got = backend.to_host(out).astype(np.float64)
        want = reference(name, *rounded)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * np.abs(want).max(), err_msg=name)


def test_a_forward_pass_calls_each_declared_primitive_where_the_engine_calls_its_own(small_checkpoint):
    from arraygpt.engine import load_model
    model = load_model(small_checkpoint, dtype="float32")
    calls = {"layer_norm": 0, "gelu": 0, "softmax": 0}

    def counted(name):
        def fn(*args, **kwargs):
            calls[name] += 1
            return getattr(layers, name)(*args, **kwargs)
        return fn
    prims = layers.Primitives(**{name: counted(name) for name in calls})
    hp = dataclasses.replace(families.Hyper.of(model.config), prims=prims)
    ids = np.asarray([[1, 5, 9]], dtype=np.int32)
    positions, mask = np.asarray([[0, 1, 2]], dtype=np.int32), np.tril(np.ones((3, 3), dtype=bool))[None, None]
    logits, _ = gpt2.gpt2(model.params, ids, positions, mask, hp)
    L = model.config.n_layer
    assert calls == {"layer_norm": 2 * L + 1, "gelu": L, "softmax": L}
    np.testing.assert_array_equal(logits, gpt2.gpt2(model.params, ids, positions, mask, families.Hyper.of(model.config))[0])
    # a fused linear is offered every linear layer with its activation; where it declines (None), the engine's runs
    offered = []
    declining = dataclasses.replace(prims, fused_linear=lambda x, w, b, activation: offered.append(activation))
    again, _ = gpt2.gpt2(model.params, ids, positions, mask, dataclasses.replace(hp, prims=declining))
    assert (offered.count("gelu"), offered.count(None), len(offered)) == (L, 3 * L, 4 * L) and calls["gelu"] == 2 * L
    np.testing.assert_array_equal(again, logits)


def test_primitives_of_a_backend_take_what_it_declares_and_keep_the_engines_for_the_rest():
    class Declares:
        gelu = staticmethod(abs)
        softmax = None
    prims = layers.Primitives.of(Declares())
    assert prims.gelu is abs and prims.softmax is layers.softmax and prims.product is layers.times_transposed
    assert layers.Primitives.of(None) == layers.ENGINE


def reference_attention(q, k, v, mask, scale):  # NumPy float64; query head h reads key/value head h // G
    groups = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    scores = np.where(mask, q @ np.swapaxes(k, -1, -2) * scale, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2)])  # GPT-2's heads; grouped queries (the Llama family)
def test_a_declared_attention_computes_the_engines_masked_attention(backend, dtype, heads):
    """A declared fused attention (torch's scaled_dot_product_attention) is the engine's causal attention over
    left-padded prompts (engine.attention.attention_mask: a pad query sees only itself), against NumPy float64
    on the same rounded inputs; and the engine's attention() calls it."""
    if backend.attention is None:
        pytest.skip(f"{backend.name} declares no attention of its own: the engine's runs")
    from arraygpt.engine.attention import attention, attention_mask
    xp = backend.xp
    (n_q, n_kv), T, D = heads, 7, 16
    q, k, v = (RNG.normal(size=(2, n, T, D)) for n in (n_q, n_kv, n_kv))
    slots, pad = np.arange(T, dtype=np.int32), np.asarray([0, 3], dtype=np.int32)
    mask = attention_mask(slots, T, pad)  # [2, 1, T, T] bool
    arrays = [xp.astype(xp.asarray(np.asarray(a, dtype=np.float32), device=backend.device), backend.dtype(dtype))
              for a in (q, k, v)]
    rounded = [backend.to_host(a).astype(np.float64) for a in arrays]
    on_device = xp.asarray(mask, device=backend.device)
    prims = layers.Primitives.of(backend)
    out = attention(*arrays, on_device, 0.25, prims)
    assert out.dtype == arrays[0].dtype and out.shape == (2, n_q, T, D)
    want = reference_attention(*rounded, mask, 0.25)
    got = backend.to_host(out).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * np.abs(want).max())
    engine = backend.to_host(attention(*arrays, on_device, 0.25)).astype(np.float64)  # the engine's own
    np.testing.assert_allclose(got, engine, rtol=0, atol=2 * TOLERANCE[dtype] * np.abs(want).max())


@pytest.mark.parametrize("rows", [1, 8, 128])
@pytest.mark.parametrize("activation", [None, "gelu"])
def test_a_declared_fused_linear_computes_the_engines_linear(backend, rows, activation):
    """A declared fused linear (torch on the CPU: bias and GELU as oneDNN post-ops of a packed product) is
    activation(x @ w.T + b) against NumPy float64, at decode's and a prompt's row counts; it runs where the
    adapter holds the weight in its product's format (Layout.product_only) and declines a plain weight, which
    the engine then computes."""
    if backend.fused_linear is None:
        pytest.skip(f"{backend.name} declares no fused linear: the engine's product, bias and activation run")
    from arraygpt.engine.layout import Layout
    from arraygpt.engine.safetensors_io import HostTensor

    def from_file(name, a, layout=None):  # as load_model hands the adapter a checkpoint tensor
        a = np.ascontiguousarray(a, dtype=np.float32)
        return backend.from_host(HostTensor(name, "F32", a.shape, memoryview(a)), "float32", layout)
    x, w, b = RNG.normal(size=(rows, 64)), RNG.normal(size=(96, 64)) * 0.2, RNG.normal(size=96)
    want = x @ w.T + b
    want = want if activation is None else reference(activation, want)
    xp = backend.xp
    on_device = xp.asarray(x.astype(np.float32), device=backend.device)
    bias = from_file("b", b)
    prims = layers.Primitives.of(backend)
    for layout in (Layout(axes=(None, None), product_only=True), None):  # held for products alone, then plain
        weight = from_file("w", w, layout)
        fused = backend.fused_linear(on_device, weight, bias, activation)
        assert (fused is not None) == (getattr(weight, "is_mkldnn", False)), layout
        out = layers.linear(on_device[None], weight, bias, prims, activation)[0]
        assert out.shape == (rows, 96) and out.dtype == on_device.dtype
        got = backend.to_host(out).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE["float32"] * np.abs(want).max(), err_msg=str(layout))
