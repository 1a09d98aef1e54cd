"""The host boundary (backends/host.py) carrying out the engine's layout decisions (engine/layout.py),
checked against NumPy formulas written here from HF's own layout: Conv1D weights [n_in, n_out], the fused
q/k/v projection's outputs ordered (q|k|v, head, D)."""

import numpy as np
import pytest

from arraygpt.backends.host import host_array
from arraygpt.engine.safetensors_io import HostTensor
from arraygpt.engine.config import GPTConfig
from arraygpt.engine.errors import CheckpointError
from arraygpt.engine.layout import Shapes, as_stored, lay_out

CONFIG = GPTConfig(vocab_size=10, n_positions=8, n_embd=6, n_layer=1, n_head=3)  # head_dim 2


def tensor(name, array, dtype="F32"):
    return HostTensor(name, dtype, array.shape, memoryview(np.ascontiguousarray(array)))


def laid_out(name, array, shapes=Shapes(n_head=3, vocab_size=10)):
    return host_array(tensor(name, array), lay_out(name, array.shape, CONFIG, shapes))


def test_the_fused_qkv_weight_becomes_whole_heads_in_contiguous_rows():
    C, H, D = 6, 3, 2
    w = np.random.default_rng(0).standard_normal((C, 3 * C)).astype(np.float32)  # HF Conv1D [C, 3C]
    out = laid_out("h.0.attn.c_attn.weight", w)
    assert out.shape == (3 * C, C) and out.flags.c_contiguous
    q, k, v = w[:, :C], w[:, C:2 * C], w[:, 2 * C:]
    for h in range(H):
        cols = slice(h * D, (h + 1) * D)
        np.testing.assert_array_equal(out[h * 3 * D:(h + 1) * 3 * D], np.concatenate([q[:, cols].T, k[:, cols].T, v[:, cols].T]))


def test_padded_heads_and_vocabulary_are_zeros_after_the_real_ones():
    w = np.arange(6 * 18, dtype=np.float32).reshape(6, 18)
    out = laid_out("h.0.attn.c_attn.weight", w, Shapes(n_head=4, vocab_size=12))
    assert out.shape == (24, 6) and not out[18:].any()
    np.testing.assert_array_equal(out[:18], laid_out("h.0.attn.c_attn.weight", w))
    wte = np.ones((10, 6), np.float32)
    padded = laid_out("wte.weight", wte, Shapes(n_head=4, vocab_size=12))
    assert padded.shape == (12, 6) and padded[:10].all() and not padded[10:].any()


def test_linear_weights_are_transposed_and_the_rest_kept_as_stored_without_a_copy():
    fc = np.random.default_rng(1).standard_normal((6, 24)).astype(np.float32)
    np.testing.assert_array_equal(laid_out("h.0.mlp.c_fc.weight", fc), fc.T)
    ln = tensor("h.0.ln_1.weight", np.ones(6, np.float32))
    assert lay_out("h.0.ln_1.weight", (6,), CONFIG, Shapes(3, 10)) == as_stored((6,))
    assert np.shares_memory(host_array(ln, as_stored((6,))), np.asarray(ln.data))


def test_half_width_patterns_are_read_as_what_they_are():
    values = np.array([1.5, -2.0, 3.140625], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact in bfloat16
    np.testing.assert_array_equal(host_array(tensor("x", bf16, "BF16")), values)
    f16 = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(host_array(tensor("x", f16, "F16")), values.astype(np.float16))


def test_a_non_finite_value_is_refused_naming_the_tensor():
    w = np.ones((6, 24), np.float32)
    w[2, 3] = np.nan
    with pytest.raises(CheckpointError, match="h.0.mlp.c_fc.weight holds 1 non-finite"):
        laid_out("h.0.mlp.c_fc.weight", w)
