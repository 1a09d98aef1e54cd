"""Energy per token, where the machine has a meter: NVML's energy counter on an NVIDIA GPU, RAPL's package
counters (Linux powercap) on a CPU that exposes them. Elsewhere a row says "no meter" and why, never zero.

Both are whole-device counters: RAPL counts every core of the package, so other load on the machine is
in the figure (validity marks such rows unsteady); NVML counts the whole GPU since the driver loaded.
"""

from __future__ import annotations

import time
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """The package domains (intel-rapl:0, intel-rapl:1, ...; AMD's RAPL uses the same names), not their
    sub-domains (intel-rapl:0:0 is the cores of package 0, already counted in it)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1 and (p / "energy_uj").exists())


class RaplCounter:
    """Microjoules of every package since boot, read from powercap; a counter that wrapped between two
    reads is corrected with its max_energy_range_uj."""

    def __init__(self, root: Path = POWERCAP):
        self.packages = rapl_packages(root)
        if not self.packages:
            raise OSError(f"no RAPL package domain under {root}")
        self.ranges = [int((p / "max_energy_range_uj").read_text()) for p in self.packages]
        self.name = "rapl:" + ",".join(p.name for p in self.packages)
        self.read()  # raises PermissionError where energy_uj is root-only (Linux >= 5.10)

    def read(self) -> list[int]:
        return [int((p / "energy_uj").read_text()) for p in self.packages]

    def joules(self, start: list[int], end: list[int]) -> float:
        return sum((e - s) % (r + 1) if e < s else e - s for s, e, r in zip(start, end, self.ranges)) / 1e6


class NvmlCounter:
    """Millijoules the GPU used since its driver loaded (nvmlDeviceGetTotalEnergyConsumption, Volta and
    newer), through nvidia-ml-py (the `energy` extra)."""

    def __init__(self, index: int):
        try:
            import pynvml
        except ImportError:
            raise OSError("nvidia-ml-py is not installed (pip install 'arraygpt[energy]')") from None
        pynvml.nvmlInit()
        self.pynvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
        self.name = f"nvml:gpu{index}"
        self.read()

    def read(self) -> list[int]:
        return [self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)]

    def joules(self, start: list[int], end: list[int]) -> float:
        return (end[0] - start[0]) / 1e3


def counter_for(device_key: str, powercap: Path = POWERCAP):
    """The meter of a device ('cpu', 'gpu:0'), or OSError saying why there is none."""
    kind, _, index = device_key.partition(":")
    if kind == "gpu":
        return NvmlCounter(int(index or 0))
    if kind == "cpu":
        return RaplCounter(powercap)
    raise OSError(f"no energy meter for {kind} devices")


class EnergyMeter:
    """Context manager around timed work; result(tokens) is {"meter", "joules", "joules_per_token",
    "watts"} or {"meter": None, "reason": ...}."""

    def __init__(self, device_key: str = "cpu", powercap: Path = POWERCAP):
        self.device_key, self.powercap = device_key, powercap
        self.counter, self.reason, self.joules, self.seconds = None, None, None, None

    def __enter__(self):
        try:
            self.counter = counter_for(self.device_key, self.powercap)
            self._start = (time.monotonic(), self.counter.read())
        except Exception as err:  # no sysfs, no permission, no NVML: the row says which
            self.counter, self.reason = None, f"no meter: {err}" if str(err) else f"no meter ({type(err).__name__})"
        return self

    def __exit__(self, *exc):
        if self.counter is not None:
            t0, start = self._start
            self.seconds = time.monotonic() - t0
            self.joules = self.counter.joules(start, self.counter.read())

    def result(self, tokens: int) -> dict:
        if self.counter is None or self.joules is None:
            return {"meter": None, "reason": self.reason or "no meter"}
        return {"meter": self.counter.name, "joules": self.joules, "joules_per_token": self.joules / max(tokens, 1),
                "watts": self.joules / max(self.seconds, 1e-9), "seconds": self.seconds}


def pooled(earlier: dict, later: dict, tokens: int) -> dict:
    """Two rounds' energy records of one scenario as one (joules and seconds add up)."""
    if not earlier.get("meter") or not later.get("meter"):
        return earlier if not earlier.get("meter") else later
    joules, seconds = earlier["joules"] + later["joules"], earlier["seconds"] + later["seconds"]
    return earlier | {"joules": joules, "joules_per_token": joules / max(tokens, 1),
                      "watts": joules / max(seconds, 1e-9), "seconds": seconds}
