"""Device meshes: 'dp=2,tp=4' parsed and checked, and how the engine's logical axes map onto them.

A mesh arranges devices in a grid of dp x tp. Data parallelism (dp) splits the batch; tensor
parallelism (tp, Megatron's layout) splits attention heads, the MLP's hidden features and the
vocabulary. The engine names logical axes (engine/layout.py); the JAX adapter places arrays with
this mapping. Library-free: the CLI, the bench and `arraygpt info` use it too.
"""

from __future__ import annotations

import dataclasses
import math

from .base import BackendError

AXES = ("dp", "tp")
# engine/layout.py's logical axes -> the mesh axis that splits them
LOGICAL = {"batch": "dp", "heads": "tp", "mlp": "tp", "vocab": "tp"}


@dataclasses.dataclass(frozen=True)
class MeshSpec:
    dp: int = 1
    tp: int = 1

    @property
    def size(self) -> int:
        return self.dp * self.tp

    @property
    def label(self) -> str:
        """'dp=2,tp=4', 'tp=8': the axes that split anything."""
        return ",".join(f"{axis}={n}" for axis, n in (("dp", self.dp), ("tp", self.tp)) if n > 1) or "dp=1"

    def ways(self, logical_axis: str | None) -> int:
        return 1 if logical_axis is None else getattr(self, LOGICAL[logical_axis])


def parse_mesh(text: str) -> MeshSpec:
    """'dp=2,tp=4', 'tp=8' or 'dp=2' -> MeshSpec; anything else is a one-line BackendError."""
    sizes = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        axis, _, value = part.partition("=")
        axis = axis.strip()
        if axis not in AXES or not value.strip().isdigit() or int(value) < 1 or axis in sizes:
            raise BackendError(f"bad mesh '{text}': give AXIS=N pairs of dp (data parallel: splits the batch) "
                               "and tp (tensor parallel: splits heads, MLP and vocabulary), such as dp=2,tp=4 or tp=8")
        sizes[axis] = int(value)
    if not sizes:
        raise BackendError(f"bad mesh '{text}': give dp=N and/or tp=N, such as dp=2,tp=4")
    return MeshSpec(**sizes)


def check_fits(mesh: MeshSpec, n_devices: int, platform: str) -> None:
    if mesh.size != n_devices and (mesh.size > n_devices or n_devices % mesh.size):
        raise BackendError(f"mesh {mesh.label} needs {mesh.size} devices; there are {n_devices} {platform} "
                           f"device(s) here (meshes that fit: {', '.join(m.label for m in meshes_for(n_devices))})")


def meshes_for(n_devices: int) -> list[MeshSpec]:
    """Every dp x tp that uses all n devices, then those that use a divisor of them."""
    divisors = [d for d in range(1, n_devices + 1) if n_devices % d == 0]
    whole = [MeshSpec(dp=n_devices // tp, tp=tp) for tp in divisors]
    return whole + [MeshSpec(dp=size // tp, tp=tp) for size in divisors[:-1] if size > 1
                    for tp in range(1, size + 1) if size % tp == 0]


def split_bytes(shape, axes, mesh: MeshSpec, itemsize: int) -> float:
    """Bytes one device holds of an array with these logical axes."""
    return math.prod(shape) * itemsize / math.prod(mesh.ways(axis) for axis in axes)
