"""The machine and library versions a result was measured with, recorded beside every number."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = ("arraygpt", "numpy", "array-api-compat", "array-api-extra", "array-api-strict", "jax", "jaxlib",
             "torch", "cupy-cuda12x", "cupy-cuda13x", "transformers", "safetensors", "tokenizers", "tiktoken", "regex")


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def first_cpu() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo ('model name', 'cpu family', 'flags', ...); {} where there is none."""
    try:
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}


def cpu_model() -> str:
    return first_cpu().get("model name") or platform.processor() or platform.machine()


def cpu_id() -> str | None:
    """'family 25 model 17' (x86 Linux), else None. Under a hypervisor the model name can be only 'AMD EPYC' for
    several generations (family 25 model 17 is Zen 4, family 26 Zen 5): this tells them apart."""
    cpu = first_cpu()
    if "cpu family" not in cpu or "model" not in cpu:
        return None
    return f"family {cpu['cpu family']} model {cpu['model']}"


# The CPU features that decide which kernels the libraries we bind (and the peers) can use for our products
CPU_FEATURES = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


def cpu_features() -> list:
    """Which of CPU_FEATURES the first CPU in /proc/cpuinfo lists (Linux; elsewhere none are known: [])."""
    flags = set(first_cpu().get("flags", "").split())
    return [f for f in CPU_FEATURES if f in flags]


# Environment variables that change which kernels the libraries we bind (and the peers) run, read when they load;
# the workers inherit them. Thread counts are not here: each row records its own (metrics.threads).
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY",       # torch's ATen kernels and Inductor's vector ISA (avx2, avx512, default)
                   "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",  # oneDNN's (torch's packed products)
                   "XLA_FLAGS",                 # XLA's (--xla_cpu_max_isa, simulated devices, fusion switches)
                   "OPENBLAS_CORETYPE",         # NumPy's OpenBLAS kernel family (Haswell, SkylakeX, ...)
                   "NPY_DISABLE_CPU_FEATURES",  # NumPy's own SIMD dispatch
                   "MKL_ENABLE_INSTRUCTIONS",   # MKL's (torch's GEMV)
                   "LLAMA_CPP_LIB_PATH")        # llama.cpp's library: another build of it (its ISA)


def kernel_settings() -> dict[str, str]:
    """Which of KERNEL_SETTINGS this process has set, and to what: a run made with an ISA capped says so."""
    return {name: os.environ[name] for name in KERNEL_SETTINGS if os.environ.get(name)}


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gpu_info() -> list[dict]:
    """Name, memory and driver of each NVIDIA GPU from nvidia-smi; empty where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = []
    for line in out.stdout.strip().splitlines():
        name, memory, driver = (part.strip() for part in line.split(","))
        rows.append({"name": name, "memory": memory, "driver": driver})
    return rows


def git_commit(repo: Path | None = None) -> str | None:
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict:
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpus": gpu_info(),
    }


def environment() -> dict:
    """Everything a result file records about where and when it was measured."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine_info(),
        "versions": library_versions(),
        "kernel_settings": kernel_settings(),
    }
