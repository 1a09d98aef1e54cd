"""A checkpoint exported to ONNX for the ONNX Runtime peer: Hugging Face's model of the checkpoint's class
(GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM) with its KV cache.

One graph serves the prefill and every decode step: input_ids [B, T], attention_mask [B, S + T],
position_ids [B, T] and the past keys and values of each layer ([B, Hkv, S, D], S may be 0) in; the last
position's logits [B, V] and the present keys and values ([B, H, S + T, D]) out. A second graph, the
whole-sequence logits without a cache, is for parity only. Exported with torch.onnx (the TorchScript
exporter, which traces the cache object through), then optimized offline by onnxruntime's transformer
optimizer for GPT-2 (attention, LayerNorm, GELU and bias fusions), as ONNX Runtime's GPT-2 tooling does; a
Llama-family graph gets ORT's own graph optimizations at load only (its offline optimizer has no model type
for it).

Each file is made once per checkpoint, in the cache ($ARRAYGPT_CACHE/onnx), written under a temporary name
and renamed, so a crash never leaves half a file; the export runs in a process of its own (torch and the HF
model would otherwise stay in the bench worker's memory, and in its RSS figures).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from arraygpt.engine.families import read_config
from arraygpt.engine.presets import cache_dir


def onnx_path(directory: Path, kind: str) -> Path:
    """Where a checkpoint's graph lives, named by its path and its files' size and time."""
    directory = Path(directory).resolve()
    digest = hashlib.sha256(str(directory).encode())
    for name in ("config.json", "model.safetensors"):
        stat = (directory / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir() / "onnx" / f"{directory.name}-{kind}-{digest.hexdigest()[:16]}.onnx"


def _modules(directory: Path):
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    hf.requires_grad_(False)
    n_layer = hf.config.num_hidden_layers

    class Step(torch.nn.Module):
        """The cached forward with flat tensors in and out (the exporter sees no cache object)."""

        def __init__(self):
            super().__init__()
            self.hf = hf

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache()
            for layer in range(n_layer):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            out = self.hf(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     past_key_values=cache, use_cache=True, logits_to_keep=1)
            present = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits[:, -1, :], *present)

    class Full(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hf = hf

        def forward(self, input_ids):
            # a mask given: without one transformers looks for packed sequences (torch.diff, no ONNX op)
            return self.hf(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False).logits

    return Step(), Full()


def cache_shape(config) -> tuple[int, int]:
    """(heads, head size) of each layer's past keys and values, from our config of either family."""
    return getattr(config, "n_kv_head", config.n_head), config.head_dim


def export(directory: Path, step_path: Path, full_path: Path) -> None:
    import torch

    config = read_config(directory / "config.json")
    step, full = _modules(directory)
    (H, D), L = cache_shape(config), config.n_layer
    ids = torch.zeros((1, 4), dtype=torch.int64)
    past = [torch.zeros((1, H, 3, D)) for _ in range(2 * L)]
    past_names = [f"past_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
    present_names = [f"present_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
    axes = {"input_ids": {0: "batch", 1: "new"}, "attention_mask": {0: "batch", 1: "total"},
            "position_ids": {0: "batch", 1: "new"}, "logits": {0: "batch"}}
    axes |= {name: {0: "batch", 2: "past"} for name in past_names}
    axes |= {name: {0: "batch", 2: "total"} for name in present_names}
    with torch.no_grad():
        torch.onnx.export(step, (ids, torch.ones((1, 7), dtype=torch.int64), torch.arange(3, 7)[None], *past),
                          str(step_path), input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names], dynamic_axes=axes, opset_version=17, dynamo=False)
        torch.onnx.export(full, (ids,), str(full_path), input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "logits": {0: "batch", 1: "length"}},
                          opset_version=17, dynamo=False)
    if config.family != "gpt2":
        return
    from onnxruntime.transformers.optimizer import optimize_model
    for path in (step_path, full_path):
        optimized = optimize_model(str(path), model_type="gpt2", num_heads=H, hidden_size=config.n_embd,
                                   opt_level=0)  # the fusions only: ORT's own graph levels run at load
        optimized.save_model_to_file(str(path))


def ensure_onnx(directory: Path) -> tuple[Path, Path]:
    """The step and full graphs of this checkpoint, exported on first use (a lock keeps concurrent benches
    to one export)."""
    step, full = onnx_path(directory, "step"), onnx_path(directory, "full")
    if step.exists() and full.exists():
        return step, full
    step.parent.mkdir(parents=True, exist_ok=True)
    with open(step.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (step.exists() and full.exists()):
            tmp_step, tmp_full = (p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (step, full))
            try:
                done = subprocess.run([sys.executable, "-m", "arraygpt.benchmarks.runners.onnx_export", str(directory),
                                       str(tmp_step), str(tmp_full)], capture_output=True, text=True,
                                      cwd=Path(__file__).resolve().parents[2])
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                    raise RuntimeError(f"the ONNX export of {directory} failed: {last}")
                os.replace(tmp_full, full)
                os.replace(tmp_step, step)
            finally:
                for p in (tmp_step, tmp_full):
                    p.unlink(missing_ok=True)
    return step, full


if __name__ == "__main__":  # ensure_onnx's child process: python -m arraygpt.benchmarks.runners.onnx_export DIR STEP FULL
    export(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
