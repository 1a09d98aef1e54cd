"""Helpers several test modules share (imported as a module, not from conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# One quick bench scenario: tiny model, numpy, no peers, probes or parity (a second or two).
TINY_BENCH = ["bench", "--models", "tiny", "--backends", "numpy", "--peer", "none", "--no-roofline", "--no-parity",
              "--batch-sizes", "1", "--prompt-lens", "4", "--new-tokens", "4", "--repeats", "1", "--warmup", "0"]
# The same scenario made long (tens of seconds), for tests that stop a bench while it runs.
LONG_BENCH = [a if a != "4" else "300" for a in TINY_BENCH[:-4]] + ["--repeats", "50", "--warmup", "0"]


def cli(*argv, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m arraygpt ARGV` in a process of its own (exit code, stdout, stderr as text)."""
    return subprocess.run([sys.executable, "-m", "arraygpt", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | (env or {}) | {"COLUMNS": "160"}, **kwargs)


def interruptible():
    """For Popen's preexec_fn: Ctrl-C (SIGINT) back to its default in the child, whatever the test run was
    started with. A shell starts a background job (`make test &`) with SIGINT ignored, the child inherits
    that, and Python then installs no KeyboardInterrupt handler: a test that presses Ctrl-C would wait
    forever."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*argv, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "arraygpt", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ | (env or {}) | {"COLUMNS": "160"},
                            preexec_fn=interruptible)


def one_line_error(result) -> str:
    """The stderr of a command that must have failed with exit 2 and one line, no traceback."""
    err = result.stderr if hasattr(result, "stderr") else result
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def wait_for(predicate, timeout=120.0, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


def bench_rows(path: Path) -> list:
    try:
        return json.loads(Path(path).read_text())["results"]
    except (OSError, ValueError, KeyError):
        return []


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def snapshot(directory: Path) -> dict:
    """Every file under directory with its bytes: what a command must not change."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def safetensors_refuses(path) -> bool:
    """The outside oracle for a safetensors file: does the safetensors library refuse to read it?"""
    import safetensors
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            for key in f.keys():
                f.get_slice(key)
        return False
    except Exception:
        return True


# -- the outside oracles and the backend matrix (conftest.py turns them into fixtures) ----------------

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
    ("torch", "gpu"),        # records its decode step as a CUDA graph
    ("torch-eager", "gpu"),  # the same op by op
    ("cupy", None),          # records (a stream capture, products through nvmath-python)
    ("cupy-eager", None),
]


def backend_or_skip(name, device=None, **options):
    from arraygpt.backends import BackendUnavailable, get_backend
    try:
        return get_backend(name, device=device, **options) if options else get_backend(name, device=device)
    except BackendUnavailable as err:
        pytest.skip(f"{name} on {device or 'default device'} is not usable here: {err.reason}")


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


def hf_logits(hf_model, ids):
    import torch
    with torch.no_grad():
        return hf_model(torch.tensor(ids)).logits.double().numpy()


def reference_logits(directory, ids):
    """Our forward pass on NumPy float64: the reference every backend is compared with."""
    from arraygpt.engine import load_model
    return np.asarray(load_model(directory, backend="numpy", dtype="float64").logits(ids))


def random_ids(n, vocab, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    return rng.integers(0, vocab, size=shape).tolist()
