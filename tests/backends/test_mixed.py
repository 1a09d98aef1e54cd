"""Mixed precision: matrices stored in bfloat16 or float16, float32 everywhere else, against the NumPy
float64 reference and HF-shaped checkpoints."""

from __future__ import annotations


import numpy as np
import pytest

from arraygpt.backends import BackendError
from arraygpt.benchmarks.parity import TOLERANCE
from arraygpt.engine import GenerationError, load_model

from helpers import backend_or_skip, random_ids

# (backend, weights) pairs that have the weights' dtype on a CPU
MIXED_CASES = [("torch", "bfloat16"), ("jax", "bfloat16"), ("torch", "float16"), ("numpy", "float16")]


def relative_error(model, ids, reference):
    got = np.asarray(model.backend.to_host(model.logits(ids)), dtype=np.float64)
    return np.abs(got - reference).max() / np.abs(reference).max()


@pytest.mark.parametrize("name, weights", MIXED_CASES)
def test_mixed_matches_the_float64_reference(hf_checkpoint, name, weights):
    directory, _ = hf_checkpoint  # both naming variants
    ids = random_ids(12, 100, seed=5, batch=2)
    reference = np.asarray(load_model(directory, backend="numpy", dtype="float64").logits(ids))
    model = load_model(directory, backend=backend_or_skip(name), dtype="float32", weights=weights)
    assert model.params["wte"].dtype == model.backend.dtype(weights)  # the matrices are stored narrow
    assert model.params["blocks"][0]["mlp"]["c_fc"]["w"].dtype == model.backend.dtype(weights)
    assert model.params["blocks"][0]["mlp"]["c_fc"]["b"].dtype == model.dtype  # biases, norms, wpe are not
    assert model.params["wpe"].dtype == model.params["ln_f"]["g"].dtype == model.dtype
    logits = model.logits(ids)
    assert logits.dtype == model.dtype  # the logits come back in float32
    assert relative_error(model, ids, reference) <= TOLERANCE[f"float32+{weights}-weights"]


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_mixed_bfloat16_is_closer_to_float64_than_all_bfloat16(small_checkpoint, name):
    backend = backend_or_skip(name)
    ids = random_ids(16, 100, seed=6, batch=2)
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    mixed = relative_error(load_model(small_checkpoint, backend=backend, weights="bfloat16"), ids, reference)
    half = relative_error(load_model(small_checkpoint, backend=backend, dtype="bfloat16"), ids, reference)
    assert mixed < half


def test_strict_runs_the_mixed_path_in_the_dtypes_it_has(small_checkpoint):
    """array-api-strict has neither bfloat16 nor float16: the same casts run as float64 arithmetic on
    float32 matrices (conformance of the mixed path), and float16 weights are a one-line error."""
    backend = backend_or_skip("strict")
    ids = random_ids(10, 100, seed=7, batch=2)
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    model = load_model(small_checkpoint, backend=backend, dtype="float64", weights="float32")
    assert relative_error(model, ids, reference) <= TOLERANCE["float32"]
    prompts = [random_ids(n, 100, seed=n) for n in (2, 6)]
    assert model.generate(prompts, max_new_tokens=6) == load_model(small_checkpoint, dtype="float64").generate(
        prompts, max_new_tokens=6)
    with pytest.raises(BackendError, match="strict' has no float16") as err:
        load_model(small_checkpoint, backend=backend, weights="float16")
    assert "\n" not in str(err.value)


def test_weights_wider_than_the_arithmetic_are_refused(small_checkpoint):
    with pytest.raises(GenerationError, match="weights in float32 are wider than the float16 arithmetic"):
        load_model(small_checkpoint, dtype="float16", weights="float32")
    with pytest.raises(BackendError, match="numpy' has no bfloat16"):
        load_model(small_checkpoint, weights="bfloat16")


def greedy_margins(model, prompt, tokens):
    """Top-1 minus top-2 logit at every position that chose one of tokens (one uncached forward)."""
    logits = np.asarray(model.backend.to_host(model.logits([prompt + tokens[:-1]])), dtype=np.float64)[0]
    chosen = np.sort(logits[len(prompt) - 1:], axis=-1)
    return chosen[:, -1] - chosen[:, -2], logits


@pytest.mark.parametrize("name", ["torch", "jax-loop"])
def test_mixed_greedy_tokens_equal_float32_where_the_margins_are_wide(small_checkpoint, name):
    """Where float32's winning logit leads by more than twice the measured mixed-vs-float32 difference,
    mixed precision must choose the same tokens."""
    backend = backend_or_skip(name)
    full = load_model(small_checkpoint, backend=backend, dtype="float32")
    mixed = load_model(small_checkpoint, backend=backend, dtype="float32", weights="bfloat16")
    checked = 0
    for seed in range(40):
        prompt = random_ids(5, 100, seed=100 + seed)
        tokens = full.generate(prompt, max_new_tokens=8)
        margins, logits = greedy_margins(full, prompt, tokens)
        _, mixed_logits = greedy_margins(mixed, prompt, tokens)
        error = np.abs(mixed_logits - logits).max()
        if margins.min() <= 2 * error:
            continue  # a near-tie: either token is a correct answer at this precision
        checked += 1
        assert mixed.generate(prompt, max_new_tokens=8) == tokens, (seed, margins.min(), error)
    assert checked >= 5, f"only {checked} prompts had margins above twice the error"


def cxx_or_skip():
    import shutil
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler here: torch.compile (Inductor) cannot build CPU kernels")


@pytest.mark.parametrize("weights", ["bfloat16", "float16"])
def test_torch_cpu_reads_half_width_rows_through_a_float32_reduction(weights):
    """The torch adapter's own product (backends/torch_products.py): one float32 row times bfloat16 or float16
    weights accumulates in float32 without rounding the row to bfloat16, so it is within float32's error
    of the float64 product of the same (half-width) weights, and closer than the engine's formula, which
    rounds the row; several rows are the engine's formula exactly."""
    import torch
    from arraygpt.engine.layers import times_transposed
    cxx_or_skip()
    backend = backend_or_skip("torch")
    product = backend.product
    if getattr(torch, weights) not in product.row_weights:
        pytest.skip(f"on this CPU torch's own {weights} product is the faster one-row way (its oneDNN {weights} path "
                    "is off here): test_torch_cpu_picks_the_float16_row_way_by_torchs_own_onednn_switch")
    rng = np.random.default_rng(3)
    w = torch.from_numpy(rng.normal(size=(2304, 768)).astype(np.float32)).to(getattr(torch, weights))
    x = torch.from_numpy(rng.normal(size=(1, 768)).astype(np.float32))
    want = w.double().numpy() @ x.double().numpy()[0]
    got = product(x, w)
    assert product.failed is None
    assert got.shape == (1, 2304) and got.dtype == torch.float32
    assert backend.products_for("float32", weights).startswith("one row: Inductor's fused reduction")
    error = np.abs(got.double().numpy()[0] - want).max() / np.abs(want).max()
    engine_error = np.abs(times_transposed(x, w).double().numpy()[0] - want).max() / np.abs(want).max()
    assert error < 1e-5 < engine_error
    rows = torch.from_numpy(rng.normal(size=(3, 768)).astype(np.float32))
    assert torch.equal(product(rows, w), times_transposed(rows, w))


def test_torch_cpu_picks_the_float16_row_way_by_torchs_own_onednn_switch():
    """float16 rows take the reduction only where torch computes float16 in oneDNN (slow at one row on the AMX
    Xeon); elsewhere (the Zen 4, AVX2) they are the engine's product, torch's float16 GEMV, which reads faster there
    (NOTES.md 2026-12-06): the declared way follows torch's own switch, and the bench row says which ran."""
    import torch
    from arraygpt.engine.layers import times_transposed
    backend = backend_or_skip("torch")
    product = backend.product
    onednn_float16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported()
    assert (torch.float16 in product.row_weights) == onednn_float16
    assert torch.bfloat16 in product.row_weights and torch.float32 in product.row_weights
    assert (("float32", "float16") in backend.compiled_products) == onednn_float16  # the bench's compile-time split
    if onednn_float16:
        return  # the reduction: test_torch_cpu_reads_half_width_rows_through_a_float32_reduction
    rng = np.random.default_rng(4)
    w = torch.from_numpy(rng.normal(size=(768, 3072)).astype(np.float32)).to(torch.float16)
    x = torch.from_numpy(rng.normal(size=(1, 3072)).astype(np.float32))
    got = product(x, w)
    assert got.dtype == torch.float32 and torch.equal(got, times_transposed(x, w))
    assert "reduction" not in backend.products_for("float32", "float16")
    # the row is rounded to float16 (as llama.cpp's F16 dot does) and the sums are float32's: float16's error
    want = w.double().numpy() @ x.double().numpy()[0]
    assert np.abs(got.double().numpy()[0] - want).max() / np.abs(want).max() < 2e-3


def test_torch_cpu_reads_float32_rows_through_the_same_reduction():
    """One float32 row times float32 weights also runs the adapter's reduction (MKL's GEMV read 18 GB/s on the
    Zen 5 where it reads 29-38): within float32's error of the float64 product; several rows stay the engine's."""
    import torch
    from arraygpt.engine.layers import times_transposed
    cxx_or_skip()
    product = backend_or_skip("torch").product
    rng = np.random.default_rng(4)
    w = torch.from_numpy(rng.normal(size=(2304, 768)).astype(np.float32))
    x = torch.from_numpy(rng.normal(size=(1, 768)).astype(np.float32))
    want = w.double().numpy() @ x.double().numpy()[0]
    got = product(x, w)
    assert product.failed is None and got.shape == (1, 2304) and got.dtype == torch.float32
    assert np.abs(got.double().numpy()[0] - want).max() / np.abs(want).max() < 1e-6
    rows = torch.from_numpy(rng.normal(size=(3, 768)).astype(np.float32))
    assert torch.equal(product(rows, w), times_transposed(rows, w))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_torch_cpu_holds_the_product_only_float32_matrices_packed_and_matches_float64(small_checkpoint, family):
    """float32 weights the products alone read are held in oneDNN's packed layout (torch_products.py); the
    embedding table, which the lookup reads too, and half-width weights stay plain, and a tied table is held a
    second time, packed, for the logits. Logits of one row, of a batch and of a prefill stay within float32's
    parity of NumPy float64, and greedy tokens equal NumPy's."""
    spec = small_checkpoint if family == "gpt2" else "tiny-llama"
    backend = backend_or_skip("torch")
    model = load_model(spec, backend=backend)
    params = model.params
    table, positions = (params["wte"], params["wpe"]) if family == "gpt2" else (params["embed"], params["embed"])
    assert not table.is_mkldnn and not positions.is_mkldnn  # read by the lookup too
    linear = [t for block in params["blocks"] for part in block.values() if isinstance(part, dict)
              for t in (v.get("w") for v in part.values() if isinstance(v, dict)) if t is not None]
    assert linear and all(t.is_mkldnn for t in linear)
    # GPT-2's table is tied: its packed second copy is the logits' head; tiny-llama's lm_head is untied
    assert params["lm_head"].is_mkldnn and params["lm_head"].shape == table.shape
    # what the bench records in each row says the same (Backend.products_for)
    assert backend.products_for("float32", "float32").startswith("oneDNN's prepacked linear")
    reference = load_model(spec, backend="numpy", dtype="float64")
    vocab = reference.config.vocab_size
    for ids in ([[7]], random_ids(3, vocab, batch=8), random_ids(24, vocab, batch=2)):
        assert relative_error(model, ids, np.asarray(reference.logits(ids))) <= TOLERANCE["float32"]
    assert model.generate([3, 1, 4], max_new_tokens=8) == reference.generate([3, 1, 4], max_new_tokens=8)
    half = load_model(spec, backend=backend, weights="bfloat16")
    assert not any(t.is_mkldnn for t in leaves_of(half.params))
    assert "oneDNN" not in backend.products_for("float32", "bfloat16")
    assert family == "llama" or "lm_head" not in half.params  # no second copy of a half-width table


def leaves_of(tree) -> list:
    """Every tensor of a nested params tree."""
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in leaves_of(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in leaves_of(v)]
    return [tree]


def test_torch_bfloat16_decoding_through_the_reduction_matches_float64(small_checkpoint):
    """Batch 1, one token at a time: every product is the adapter's reduction."""
    cxx_or_skip()
    ids = [[7]]
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    model = load_model(small_checkpoint, backend=backend_or_skip("torch"), weights="bfloat16")
    assert relative_error(model, ids, reference) <= TOLERANCE["float32+bfloat16-weights"]
    assert model.backend.product.failed is None


def test_torch_without_a_compiler_falls_back_to_eager_with_one_warning(tmp_path):
    """Where Inductor cannot build its kernel (no C++ compiler), the product is the engine's, with a
    warning, never a traceback. Run in a process of its own: Inductor's compiler setting is global."""
    import os
    import subprocess
    import sys
    pytest.importorskip("torch")
    script = tmp_path / "no_compiler.py"
    script.write_text(
        "import warnings, torch\n"
        "import torch._inductor.config as config\n"
        "config.cpp.cxx = ('/nonexistent/c++',)\n"
        "from arraygpt.backends import get_backend\n"
        "from arraygpt.engine.layers import times_transposed\n"
        "product = get_backend('torch').product\n"
        "x, w = torch.ones(1, 64), torch.ones(32, 64, dtype=torch.bfloat16)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    first, second = product(x, w), product(x, w)\n"
        "print(product.failed is not None, torch.equal(first, times_transposed(x, w)), torch.equal(second, first),\n"
        "      sum('could not build the one-row product' in str(c.message) for c in caught))\n")
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "True", "1"], done.stdout + done.stderr[-2000:]


def test_a_dtype_the_backend_declares_slow_is_said_with_its_measured_cost(small_checkpoint):
    """numpy float16 runs (26x slower than float32 at 124M b1, measured and committed): load_model warns in
    one line naming the cost; a float32 load does not warn; the CLI and the bench's plan say it once."""
    import subprocess
    import sys
    import warnings

    from arraygpt.engine import load_model
    from arraygpt.engine.errors import SlowPathWarning
    with pytest.warns(SlowPathWarning, match=r"float16 on numpy: .*26x slower"):
        load_model(small_checkpoint, backend="numpy", weights="float16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowPathWarning)
        load_model(small_checkpoint, backend="numpy")
    out = subprocess.run([sys.executable, "-m", "arraygpt", "generate", "--model", "tiny", "--weights", "float16",
                          "-n", "2", "hi"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr.count("26x slower") == 1
    assert "arraygpt: warning: float16 on numpy" in out.stderr
