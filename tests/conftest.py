"""Shared fixtures: small Hugging Face GPT-2 checkpoints (the outside oracle) and the backend matrix."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

# Eight simulated CPU devices for the sharding tests (tests/test_sharding.py), set before anything starts
# JAX; single-device tests use the first. A caller's own XLA_FLAGS wins.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# Keep tests away from the user's cache and from tiktoken's download cache.
_SESSION_TMP = tempfile.mkdtemp(prefix="arraygpt-tests-")
os.environ.setdefault("ARRAYGPT_CACHE", os.path.join(_SESSION_TMP, "cache"))
os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(_SESSION_TMP, "tiktoken")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends import BackendUnavailable, get_backend  # noqa: E402

# (backend, device) pairs the engine must run on. GPU rows skip where no GPU exists.
BACKEND_CASES = [
    ("numpy", None),
    ("strict", None),
    ("strict", "device1"),  # a non-default device: catches arrays created without device=
    ("jax", "cpu"),
    ("jax-loop", "cpu"),  # the whole decode loop compiled: same tokens as the step-by-step loop
    ("torch", "cpu"),
    ("jax", "gpu"),
    ("jax-loop", "gpu"),
    ("torch", "gpu"),
    ("cupy", None),
]


def backend_or_skip(name, device=None, **options):
    try:
        return get_backend(name, device=device, **options) if options else get_backend(name, device=device)
    except BackendUnavailable as err:
        pytest.skip(f"{name} on {device or 'default device'} is not usable here: {err.reason}")


@pytest.fixture(params=BACKEND_CASES, ids=[f"{b}-{d or 'default'}" for b, d in BACKEND_CASES])
def backend(request):
    name, device = request.param
    return backend_or_skip(name, device)


SMALL_CONFIG = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=48)


def make_hf_model(seed=0, **overrides):
    """A randomly initialized GPT2LMHeadModel whose every parameter (biases, LayerNorm too) is random."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**(SMALL_CONFIG | overrides))
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ln" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.1 * torch.randn_like(param))
    return model


def save_bare_variant(hf_model, directory):
    """The hub's original gpt2 naming: no 'transformer.' prefix, with attn.bias/masked_bias buffers."""
    import torch
    from safetensors.torch import save_file

    n_pos = hf_model.config.n_positions
    tensors = {}
    for name, value in hf_model.state_dict().items():
        if name == "lm_head.weight":
            continue
        tensors[name.removeprefix("transformer.")] = value.detach().clone().contiguous()
    for i in range(hf_model.config.n_layer):
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos)
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(hf_model.config.to_dict()))


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


def hf_logits(hf_model, ids):
    import torch
    with torch.no_grad():
        return hf_model(torch.tensor(ids)).logits.double().numpy()


def reference_logits(directory, ids):
    """Our forward pass on NumPy float64: the reference every backend is compared with."""
    from engine import load_model
    return np.asarray(load_model(directory, backend="numpy", dtype="float64").logits(ids))


def random_ids(n, vocab, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    return rng.integers(0, vocab, size=shape).tolist()
