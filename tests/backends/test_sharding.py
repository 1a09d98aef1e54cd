"""The forward pass split over a JAX device mesh (tensor and data parallel), on 8 simulated CPU devices
(tests/conftest.py sets XLA_FLAGS before JAX starts), against the single-device run and NumPy float64."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from arraygpt.backends import BackendError, get_backend
from arraygpt.engine import load_model
from arraygpt.engine.checkpoint import leaves
from arraygpt.engine.kv_cache import allocate_kv_cache
from arraygpt.engine.layout import CACHE_AXES
from arraygpt.engine.sampling import Sampling

from helpers import make_hf_model, random_ids

jax = pytest.importorskip("jax")
pytestmark = pytest.mark.skipif(len(jax.devices("cpu")) < 8, reason="needs 8 CPU devices: run with "
                                "XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX starts")

MESHES = ["tp=2", "tp=4", "tp=8", "dp=2,tp=2", "dp=2,tp=4"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """8 heads (whole heads on up to 8 devices) and a 100-word vocabulary (padded to 104 at tp=8)."""
    directory = tmp_path_factory.mktemp("hf-8-heads")
    make_hf_model(seed=3, n_head=8, n_embd=64).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def single(checkpoint):
    return load_model(checkpoint, backend=get_backend("jax", device="cpu"))


@pytest.fixture(scope="module")
def reference(checkpoint):
    return load_model(checkpoint, backend="numpy", dtype="float64")


def mesh_model(checkpoint, mesh, name="jax"):
    return load_model(checkpoint, backend=get_backend(name, device="cpu", mesh=mesh))


@pytest.mark.parametrize("mesh", MESHES)
def test_sharded_model_computes_what_one_device_does(checkpoint, single, reference, mesh):
    model = mesh_model(checkpoint, mesh)
    ids = random_ids(11, 100, seed=2, batch=3)  # 3 rows: padded to 4 under dp=2
    expected = np.asarray(reference.logits(ids))
    got = np.asarray(model.backend.to_host(model.logits(ids)), dtype=np.float64)
    assert got.shape == expected.shape == (3, 11, 100)  # padded rows and vocabulary are cut off
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
    prompts = [random_ids(n, 100, seed=40 + n) for n in (4, 9, 6)]
    assert model.generate(prompts, max_new_tokens=10) == single.generate(prompts, max_new_tokens=10)
    sampled = dict(max_new_tokens=10, temperature=0.9, top_k=30, top_p=0.95, seed=7)
    assert model.generate(prompts, **sampled) == single.generate(prompts, **sampled)


@pytest.mark.parametrize("mesh", ["tp=4", "dp=2,tp=4"])
def test_the_compiled_loop_runs_on_a_mesh_too(checkpoint, single, mesh):
    model = mesh_model(checkpoint, mesh, "jax-loop")
    prompts = [random_ids(n, 100, seed=60 + n) for n in (3, 7)]
    sampled = dict(max_new_tokens=9, temperature=0.8, seed=11)
    assert model.generate(prompts, max_new_tokens=9) == single.generate(prompts, max_new_tokens=9)
    assert model.generate(prompts, **sampled) == single.generate(prompts, **sampled)


def test_mixed_lengths_under_data_parallel_equal_one_by_one(checkpoint):
    model = mesh_model(checkpoint, "dp=2,tp=2")
    prompts = [random_ids(n, 100, seed=80 + n) for n in (1, 7, 3, 12, 5)]  # 5 rows: padded to 6
    alone = [model.generate(p, max_new_tokens=8) for p in prompts]
    assert model.generate(prompts, max_new_tokens=8) == alone


SPLIT = {  # param path -> the dimension tensor parallelism splits ([n_out, n_in] layout)
    ("attn", "c_attn", "w"): 0, ("attn", "c_attn", "b"): 0, ("attn", "c_proj", "w"): 1,
    ("mlp", "c_fc", "w"): 0, ("mlp", "c_fc", "b"): 0, ("mlp", "c_proj", "w"): 1,
}


def test_each_device_holds_its_share_of_every_split_weight_and_of_the_cache(checkpoint):
    """Read from the arrays' own shards: 1/tp of each split weight per device, none whole, and 1/(dp tp)
    of the cache."""
    model = mesh_model(checkpoint, "dp=2,tp=4")
    devices = set(jax.devices("cpu")[:8])
    for block in model.params["blocks"]:
        for (part, layer, leaf), dim in SPLIT.items():
            array = block[part][layer][leaf]
            shards = array.addressable_shards
            assert {s.device for s in shards} == devices
            for shard in shards:
                assert shard.data.shape[dim] == array.shape[dim] // 4
                assert shard.data.size == array.size // 4  # never a full copy
        replicated = block["attn"]["c_proj"]["b"]
        assert all(s.data.shape == replicated.shape for s in replicated.addressable_shards)
    wte = model.params["wte"]
    assert all(s.data.shape == (wte.shape[0] // 4, wte.shape[1]) for s in wte.addressable_shards)
    xp, backend = backend_xp(model)
    cache = allocate_kv_cache(xp, model.config, 4, 20, model.dtype, backend.device_for(CACHE_AXES), n_heads=model.n_heads)
    keys = cache[0][0]
    assert keys.shape == (4, 8, 20, 8)
    assert all(s.data.shape == (2, 2, 20, 8) for s in keys.addressable_shards)  # batch / dp, heads / tp


def backend_xp(model):
    return model.backend.xp, model.backend


def test_decode_step_all_reduces_activations_and_gathers_no_weight(checkpoint):
    """The compiled decode step's collectives: an all-reduce after each block's attention and MLP output
    products (and one for the embedding lookup in a split vocabulary); no all-gather of a weight."""
    model = mesh_model(checkpoint, "tp=4")
    xp, backend = backend_xp(model)
    by_row = backend.device_for(("batch",))
    cache = allocate_kv_cache(xp, model.config, 2, 24, model.dtype, backend.device_for(CACHE_AXES), n_heads=model.n_heads)
    tokens = xp.zeros((2,), dtype=xp.int32, device=by_row)
    pad = xp.zeros((2,), dtype=xp.int32, device=by_row)
    uniforms = xp.zeros((2,), dtype=xp.float32, device=by_row)
    hlo = model.decoding.step.lower(model.params, tokens, 7, pad, cache, uniforms, n_slots=24,
                             sampling=Sampling()).compile().as_text()
    reduces = re.findall(r"= (\w+)\[([\d,]*)\][^=]*? all-reduce\(", hlo)
    activations = [shape for _, shape in reduces if "64" in shape.split(",")]  # [B, C] or [C, B] partial sums
    assert len(activations) == 2 * model.config.n_layer + 1, reduces
    # the bench's all-reduce bytes per step (computed from the layout) are what XLA compiled
    from arraygpt.benchmarks.judge.roofline import allreduce_bytes_per_step
    compiled = sum(4 * int(np.prod([int(n) for n in shape.split(",")])) for dtype, shape in reduces
                   if "64" in shape.split(",") and dtype == "f32")
    assert compiled == allreduce_bytes_per_step(model.config, "float32", 2, "tp=4")
    weight_shapes = {tuple(leaf.shape) for leaf in leaves(model.params) if leaf.ndim == 2}
    gathers = [tuple(int(n) for n in shape.split(",") if n) for shape in
               re.findall(r"= \w+\[([\d,]*)\][^=]*? all-gather\(", hlo)]
    assert not [g for g in gathers if g in weight_shapes or np.prod(g) >= 64 * 64], gathers


@pytest.mark.parametrize("mesh, message", [
    ("dp=4,tp=4", "mesh dp=4,tp=4 needs 16 devices; there are 8 cpu device"),
    ("tp=3", "mesh tp=3 needs 3 devices; there are 8 cpu device"),
    ("pp=2", "bad mesh 'pp=2'"),
])
def test_a_mesh_that_does_not_fit_is_one_line(mesh, message):
    with pytest.raises(BackendError, match=message) as err:
        get_backend("jax", device="cpu", mesh=mesh)
    assert "\n" not in str(err.value)
    with pytest.raises(BackendError, match="runs on one device"):
        get_backend("numpy", mesh="tp=2")


def test_1558M_loads_split_eight_ways_and_makes_a_token(tmp_path):
    """GPT-2 XL (6.2 GB in float32, 25 heads padded to 32) over tp=8: each device holds ~1/8."""
    from arraygpt.engine.synthetic import write_synthetic_checkpoint
    directory = write_synthetic_checkpoint("1558M", tmp_path / "1558M", seed=0)
    try:
        model = load_model(directory, backend=get_backend("jax", device="cpu", mesh="tp=8"))
        first = jax.devices("cpu")[0]
        on_first = sum(s.data.nbytes for leaf in leaves(model.params) for s in leaf.addressable_shards
                       if s.device == first)
        whole = model.config.n_params * 4
        assert model.n_heads == 32
        assert whole / 8 < on_first < whole / 8 * 1.25, on_first / whole  # 1/8, plus the padded heads
        token = model.generate(random_ids(6, 50257, seed=1), max_new_tokens=1)
        assert len(token) == 1 and 0 <= token[0] < 50257
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # 6.2 GB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_tokens_of_one(tmp_path):
    """`arraygpt generate --mesh tp=8` as one program in two processes of 4 simulated CPU devices each
    (JAX's CPU collectives, gloo, across the processes), against one process on one device."""
    argv = [sys.executable, "-m", "arraygpt", "generate", "hello world", "a b c", "--model", "tiny", "--backend",
            "jax", "-n", "6", "--temperature", "1.0", "--seed", "5", "--json"]
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    port = free_port()
    runs = [subprocess.Popen(argv + ["--mesh", "tp=8", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                                     "--process-id", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for i in range(2)]
    outputs = [run.communicate(timeout=240) for run in runs]
    alone = subprocess.run(argv, capture_output=True, text=True, env=os.environ | {"XLA_FLAGS": ""}, timeout=120)
    assert alone.returncode == 0, alone.stderr

    def tokens(stdout):  # gloo prints its connection log to stdout too
        return [json.loads(line)["ids"] for line in stdout.splitlines() if line.startswith("{")]

    expected = tokens(alone.stdout)
    assert len(expected) == 2
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-2000:]
        assert tokens(out) == expected


@pytest.mark.parametrize("mesh", ["tp=2", "dp=2,tp=2"])
def test_the_llama_family_splits_query_and_key_value_heads(mesh):
    """tiny-llama: 8 query heads over 2 key/value heads. tp splits both (each device keeps whole groups);
    logits and greedy tokens equal the single device's."""
    ids = random_ids(9, 4096, seed=8, batch=2)
    one = load_model("tiny-llama", backend=get_backend("jax", device="cpu"))
    split = load_model("tiny-llama", backend=get_backend("jax", device="cpu", mesh=mesh))
    np.testing.assert_allclose(np.asarray(split.logits(ids)), np.asarray(one.logits(ids)), atol=2e-5, rtol=0)
    assert split.generate(ids, max_new_tokens=8) == one.generate(ids, max_new_tokens=8)


def test_key_value_heads_that_do_not_divide_tp_are_refused_in_one_line():
    """Padding key/value heads with zeros would change which query heads share them: refused, saying which tp fits."""
    from arraygpt.engine import CheckpointError
    with pytest.raises(CheckpointError, match="8 query and 2 key/value heads do not split into 4 shards; use a "
                                              "tensor-parallel size that divides 2"):
        load_model("tiny-llama", backend=get_backend("jax", device="cpu", mesh="tp=4"))
