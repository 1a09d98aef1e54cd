"""The host boundary: everything done with NumPy on the host between a checkpoint file and a backend.

A checkpoint tensor (engine.safetensors_io.HostTensor, a view of the mapped file) becomes a NumPy array laid
out as the engine decided (engine.layout.Layout): its 16-bit patterns read as what they are, then each
step of the layout in the record's order (transpose, reorder heads, pad), then checked for NaN and
infinity. Every adapter makes its device arrays from host_array(); the host random numbers the engine
samples with (HostRandom) live here too.
"""

from __future__ import annotations

import numpy as np

from arraygpt.engine.errors import CheckpointError


def stored_array(tensor) -> np.ndarray:
    """A NumPy view of the tensor as the file holds it (no copy), BF16 widened to float32 (a copy) and F16
    read as float16."""
    data = np.asarray(tensor.data)
    if tensor.dtype == "BF16":  # bfloat16 is the top half of a float32
        return (data.astype(np.uint32) << 16).view(np.float32)
    if tensor.dtype == "F16":  # 16-bit patterns (memoryview casts to float16 only from Python 3.12)
        return data.view(np.float16)
    return data


def host_array(tensor, layout=None) -> np.ndarray:
    """The tensor laid out as `layout` says (None: as stored); no copy for a tensor kept as stored,
    except BF16; a transposed, head-major or padded one is a C-contiguous copy. Refuses a tensor holding
    NaN or infinity (CheckpointError naming it)."""
    data = stored_array(tensor)
    if layout is not None and layout.transpose:
        data = np.ascontiguousarray(data.T)
    check_finite(data, tensor.name)
    if layout is not None and layout.heads is not None:  # dim 0 (q|k|v, head, D) -> (head, q|k|v, D)
        n_head, head_dim = layout.heads
        rest = data.shape[1:]
        data = np.ascontiguousarray(data.reshape(3, n_head, head_dim, *rest).swapaxes(0, 1)).reshape(data.shape)
    if layout is not None and layout.pad_to is not None:
        data = np.pad(data, [(0, want - have) for want, have in zip(layout.pad_to, data.shape)])
    return data


def check_finite(data: np.ndarray, name: str) -> None:
    """NaN and +-inf show in the max or the min: two passes with no temporary array, ~10 ms per
    150 MB here (np.isfinite(data).all() took 13 ms and a bool array the tensor's size)."""
    if data.size and not (np.isfinite(data.max()) and np.isfinite(data.min())):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise CheckpointError(f"tensor {name} holds {bad} non-finite value(s) (NaN or infinity): the checkpoint is "
                              "corrupt or was saved after a diverged training step")


class HostRandom:
    """numpy.random.Generator(PCG64) behind the engine's HostRandom protocol."""

    def __init__(self, seed: int | None):
        self._generator = np.random.default_rng(seed)

    def uniform(self, n: int) -> list[float]:
        return self._generator.random(n).tolist()

    def normal(self, shape, std: float) -> np.ndarray:
        values = self._generator.standard_normal(tuple(shape), dtype=np.float32)
        values *= np.float32(std)
        return values
