"""The runners a bench scenario can name: our engine on a backend, or a peer, found through PEERS as backends are
through BACKENDS (a record per peer names its module and class, so nothing here imports a runner).

A runner is made with (device, precision) and has measure(scenario, plan) -> records.Measured (its Metrics and
timed repeats, from measure/timing.run_repeats) and parity_logits(spec, dtype, prompt); it runs in a worker
process of its own (the peers also have generate_ids(scenario), the greedy ids of one run, which tests compare
with HF's). Peers run where the
scenario says (HF on the GPU in a GPU run), in the scenario's dtype and precision, where their rule says
they can.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from typing import Callable

from arraygpt.backends import get_backend

# the weights llama.cpp reads, with its GGUF file type (q8_0: its own numerics row)
LLAMACPP_FILE_TYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "q8_0": "Q8_0"}


class PeerNotInstalled(Exception):
    """A peer whose package is not installed: its scenarios are skipped with this message (the install line)."""


def _hf_runs(device, dtype, precision, weights, batch) -> bool:  # no mixed mode; tf32 only on a GPU
    return (weights in (None, dtype)) and (precision == "float32" or device not in (None, "cpu"))


def _picogpt_runs(device, dtype, precision, weights, batch) -> bool:  # one float32 sequence on the CPU
    return device is None and batch == 1 and dtype == "float32" and precision == "float32" and weights in (None, dtype)


def _llamacpp_runs(device, dtype, precision, weights, batch) -> bool:
    """float32 arithmetic on the CPU, weights in float32, a half type or Q8_0."""
    return (device in (None, "cpu") and dtype == "float32" and precision == "float32"
            and (weights or dtype) in LLAMACPP_FILE_TYPES)


def _ort_runs(device, dtype, precision, weights, batch) -> bool:
    """float32 on the CPU (the exported graph is float32; half-width graphs are not exported)."""
    return device in (None, "cpu") and dtype == "float32" and precision == "float32" and weights in (None, "float32")


@dataclasses.dataclass(frozen=True)
class Peer:
    what: str             # for --help, `arraygpt info` and the README
    module: str           # where its runner class lives, imported only when a worker makes one
    runner: str           # the class: Runner(device, precision)
    needs: tuple          # the Python modules it needs, looked for without importing them
    install: str          # what to install where one is missing
    probes_with: str      # the backend whose roofline probes its worker runs ("torch": on the peer's device)
    runs: Callable        # (device, dtype, precision, weights, batch) -> whether it has that scenario
    families: tuple = ("gpt2",)  # the model families (engine/families.py) it runs
    # Whether probes_with is the library the peer's own products run on (HF: torch). Where it is not (llama.cpp's
    # ggml, ORT's MLAS probed through NumPy), its probes measure the machine in float32 only: NumPy's float16
    # product says nothing of llama.cpp's F16 kernel (it once showed as a 1.0 GB/s "llamacpp float16" probe).
    probes_own_kernels: bool = True


_PEERS_EXTRA = "pip install 'arraygpt[peers]'"
PEERS = {
    "hf": Peer("Hugging Face transformers, eager: a forward per token with past_key_values",
               "arraygpt.benchmarks.runners.hf", "HFRunner", ("transformers", "torch"), "pip install 'arraygpt[test]'",
               "torch", _hf_runs, ("gpt2", "llama")),
    "hf-static": Peer("Hugging Face generate() with a static cache (transformers compiles it on CUDA by itself)",
                      "arraygpt.benchmarks.runners.hf", "HFStaticRunner", ("transformers", "torch"),
                      "pip install 'arraygpt[test]'", "torch", _hf_runs, ("gpt2", "llama")),
    "picogpt": Peer("picoGPT's loop as published (NumPy, no KV cache, float32, batch 1)",
                    "arraygpt.benchmarks.runners.picogpt", "PicoGPTRunner", ("numpy",), "pip install numpy", "numpy",
                    _picogpt_runs),
    "llamacpp": Peer("llama.cpp through llama-cpp-python (the peers extra): the checkpoint as GGUF (F32, F16, BF16, "
                     "and Q8_0 for --weights q8_0; GPT-2 and the Llama family), a batch as parallel sequences, on "
                     "the CPU",
                     "arraygpt.benchmarks.runners.llamacpp", "LlamaCppRunner", ("llama_cpp", "gguf"),
                     _PEERS_EXTRA + " (llama-cpp-python builds llama.cpp from source: about 10 CPU-minutes, once; "
                     "pip keeps the wheel)", "numpy", _llamacpp_runs, ("gpt2", "llama"), probes_own_kernels=False),
    "ort": Peer("ONNX Runtime (the peers extra): HF's GPT-2 with its KV cache exported to ONNX, ORT's transformer "
                "fusions, float32 on the CPU",
                "arraygpt.benchmarks.runners.ort", "OrtRunner", ("onnxruntime", "onnx", "transformers", "torch"),
                _PEERS_EXTRA + " (onnxruntime, onnx and onnxscript; the export uses torch)", "numpy", _ort_runs,
               ("gpt2", "llama"), probes_own_kernels=False),
}


def import_for_peer(peer: str, module: str, package: str):
    """The peer's library, imported; absent, a PeerNotInstalled naming the package and the install line (a
    skipped row). Installed but broken, the import's own error (an error row)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise PeerNotInstalled(f"{package} is not installed: {PEERS[peer].install}") from None


def peer_runs(peer: str, device: str | None, dtype: str, precision: str, weights: str | None, batch: int,
              mesh: str | None = None, family: str = "gpt2") -> bool:
    """Whether a peer can run a scenario: peers run on one device (no mesh), models of their families, then as
    their rule says."""
    return not mesh and family in PEERS[peer].families and PEERS[peer].runs(device, dtype, precision, weights, batch)


def peer_status() -> list[tuple[str, bool, str]]:
    """(peer, installed, what it is or what is missing) for each peer, without importing any of them."""
    rows = []
    for name, peer in PEERS.items():
        missing = [m for m in peer.needs if importlib.util.find_spec(m) is None]
        rows.append((name, not missing, peer.what if not missing else
                     f"needs {', '.join(missing)} ({_PEERS_EXTRA}, or [test] for hf)"))
    return rows


def make_runner(name: str, device: str | None, precision: str = "float32", mesh: str | None = None):
    """(runner, backend for the roofline probes) for a backend name or a peer."""
    if name in PEERS:
        peer = PEERS[name]
        probe_backend = (get_backend("torch", device=device, precision=precision) if peer.probes_with == "torch"
                         else get_backend(peer.probes_with))
        runner = getattr(importlib.import_module(peer.module), peer.runner)(probe_backend.device, precision)
        return runner, probe_backend
    backend = get_backend(name, device=device, precision=precision, mesh=mesh)
    return importlib.import_module("arraygpt.benchmarks.runners.engine").EngineRunner(backend), backend
