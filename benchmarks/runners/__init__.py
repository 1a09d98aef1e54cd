"""The runners a bench scenario can name: our engine on a backend, or a peer.

Every runner has measure(scenario) -> {"metrics", "repeats"} and parity_logits(spec, dtype, prompt),
and runs in a worker process of its own (the HF runners also have generate_ids(scenario), the greedy
ids of one run, which a test compares between them).
Peers run where the scenario says (HF on the GPU in a GPU run), in the scenario's dtype and precision.
"""

from __future__ import annotations

# peer -> what it is, for --help and the README
PEERS = {
    "hf": "Hugging Face transformers, eager: a forward per token with past_key_values",
    "hf-static": "Hugging Face generate() with a static cache (transformers compiles it on CUDA by itself)",
    "picogpt": "picoGPT's loop as published (NumPy, no KV cache, float32, batch 1)",
    "llamacpp": "llama.cpp through llama-cpp-python (the peers extra): the checkpoint as GGUF (F32, F16, BF16, "
                "and Q8_0 for --weights q8_0), a batch as parallel sequences, on the CPU",
    "ort": "ONNX Runtime (the peers extra): HF's GPT-2 with its KV cache exported to ONNX, ORT's transformer "
           "fusions, float32 on the CPU",
}

class PeerNotInstalled(Exception):
    """A peer whose package is not installed: its scenarios are skipped with this message (the install line)."""


# peer -> the Python modules it needs (the peers extra: pip install 'arraygpt[peers]'), for `arraygpt info`
PEER_NEEDS = {"hf": ("transformers", "torch"), "hf-static": ("transformers", "torch"), "picogpt": ("numpy",),
              "llamacpp": ("llama_cpp", "gguf"), "ort": ("onnxruntime", "onnx", "transformers", "torch")}


def peer_status() -> list[tuple[str, bool, str]]:
    """(peer, installed, what it is or what is missing) for each peer, without importing any of them."""
    import importlib.util
    rows = []
    for peer, what in PEERS.items():
        missing = [m for m in PEER_NEEDS[peer] if importlib.util.find_spec(m) is None]
        rows.append((peer, not missing, what if not missing else
                     f"needs {', '.join(missing)} (pip install 'arraygpt[peers]', or [test] for hf)"))
    return rows


def make_runner(name: str, device: str | None, precision: str = "float32", mesh: str | None = None):
    """(runner, backend for the roofline probes) for a backend name or a peer."""
    from backends import get_backend
    if name in ("hf", "hf-static"):
        from .hf import HFRunner, HFStaticRunner
        probe_backend = get_backend("torch", device=device, precision=precision)
        runner = (HFRunner if name == "hf" else HFStaticRunner)(probe_backend.device, precision)
        return runner, probe_backend
    if name == "llamacpp":
        from .llamacpp import LlamaCppRunner
        return LlamaCppRunner(), get_backend("numpy")
    if name == "ort":
        from .ort import OrtRunner
        return OrtRunner(), get_backend("numpy")
    if name == "picogpt":
        from .picogpt import PicoGPTRunner
        return PicoGPTRunner(), get_backend("numpy")
    from .engine import EngineRunner
    backend = get_backend(name, device=device, precision=precision, mesh=mesh)
    return EngineRunner(backend), backend
