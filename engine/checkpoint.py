"""Hugging Face GPT-2 checkpoints: safetensors read by memory map, names normalized, shapes checked."""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
from pathlib import Path
from typing import Callable, Iterable

from .config import GPTConfig, expected_shapes
from .errors import CheckpointError

# safetensors dtype -> (struct format for memoryview.cast, bytes per element). BF16 has no struct
# format: its 16-bit patterns travel as uint16 and the backend widens them.
_DTYPES = {"F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": ("H", 2)}
_MAX_HEADER_BYTES = 100 * 2**20
_DROPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights
# HF's Conv1D weights, stored [n_in, n_out]; the model takes them as [n_out, n_in] (engine.gpt2.linear).
LINEAR_WEIGHT_SUFFIXES = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def is_matrix(name: str) -> bool:
    """The tensors the weight products read (the linear weights and wte, which the logits reuse): what
    a mixed-precision model stores in its weights' dtype."""
    return name == "wte.weight" or name.endswith(LINEAR_WEIGHT_SUFFIXES)


@dataclasses.dataclass(frozen=True)
class HostTensor:
    """A tensor still in the checkpoint file: a read-only, zero-copy view of the mapped bytes."""

    name: str
    dtype: str                 # safetensors code: "F32", "F16", "BF16", "F64"
    shape: tuple[int, ...]     # as stored in the file
    data: memoryview           # typed and shaped (BF16 as uint16); np.asarray(data) does not copy
    transposed: bool = False   # hand it to the backend as its (copied) transpose; see transpose()
    mapping: mmap.mmap | None = dataclasses.field(default=None, repr=False, compare=False)
    offset: int = 0            # where data starts in mapping
    heads: tuple[int, int] | None = None  # (n_head, head_dim): reorder dim 0 head-major; see head_major()
    pad_to: tuple[int, ...] | None = None  # zero-pad each dim at its end to this shape; see padded()

    # What the backend makes of it, in this order (engine/layout.py decides; backends.base.host_array
    # does it on the host, with NumPy): transpose, reorder heads, pad.

    def transpose(self) -> "HostTensor":
        """The same 2-D tensor, to be made on the backend as a C-contiguous transpose (a copy)."""
        return dataclasses.replace(self, transposed=not self.transposed)

    def head_major(self, n_head: int, head_dim: int) -> "HostTensor":
        """Dim 0, HF's (q|k|v, head, D), reordered (head, q|k|v, D): whole heads in contiguous rows."""
        return dataclasses.replace(self, heads=(n_head, head_dim))

    def padded(self, shape: tuple[int, ...]) -> "HostTensor":
        """Zeros appended to each dim up to shape (the same tensor if it already has that shape)."""
        return self if tuple(shape) == self.out_shape else dataclasses.replace(self, pad_to=tuple(shape))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The shape the backend makes: transposed, reordered and padded as asked."""
        if self.pad_to is not None:
            return self.pad_to
        return tuple(reversed(self.shape)) if self.transposed else self.shape

    def release(self) -> None:
        """Drop this tensor's file pages from the process's resident memory, once a copy was made.

        They stay in the OS page cache; reading the view again faults them back in. Whole pages
        only: a page shared with a neighbouring tensor stays."""
        if self.mapping is None or not hasattr(self.mapping, "madvise"):
            return
        page = mmap.PAGESIZE
        start = -(-self.offset // page) * page
        end = (self.offset + self.data.nbytes) // page * page
        if end > start:
            self.mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


def read_safetensors(path: Path) -> dict[str, HostTensor]:
    """Map a .safetensors file and return views of its tensors, validating the header against the file."""
    path = Path(path)
    try:
        size = os.path.getsize(path)
        if size < 8:
            raise CheckpointError(f"{path}: truncated ({size} bytes): not a safetensors file")
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    header_len = int.from_bytes(mapped[:8], "little")
    if header_len > min(size - 8, _MAX_HEADER_BYTES):
        raise CheckpointError(f"{path}: unreadable header (says {header_len} bytes, the file has {size}): "
                              "truncated or not a safetensors file")
    try:
        header = json.loads(bytes(mapped[8:8 + header_len]))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        raise CheckpointError(f"{path}: unreadable header ({err})") from None
    data_start = 8 + header_len
    whole = memoryview(mapped)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(n) for n in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name}: malformed header entry {info!r}") from None
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name}: dtype {dtype} is not supported "
                                  f"(supported: {', '.join(_DTYPES)})")
        fmt, itemsize = _DTYPES[dtype]
        if end - begin != math.prod(shape) * itemsize or begin < 0:
            raise CheckpointError(f"{path}: tensor {name}: offsets [{begin}, {end}) do not hold shape "
                                  f"{list(shape)} of {dtype}")
        if data_start + end > size:
            raise CheckpointError(f"{path}: tensor {name}: data ends at byte {data_start + end} but the "
                                  f"file has {size}: the file is truncated")
        view = whole[data_start + begin:data_start + end].cast(fmt, shape)
        tensors[name] = HostTensor(name, dtype, shape, view, mapping=mapped, offset=data_start + begin)
    return tensors


def bare_name(name: str) -> str | None:
    """The hub's bare tensor name ('h.0.attn.c_attn.weight'), or None for tensors GPT-2 does not use.

    save_pretrained writes 'transformer.'-prefixed names; the hub's original gpt2 file has bare names
    plus attn.bias mask buffers. lm_head.weight is dropped because the logits are tied to wte.
    """
    name = name.removeprefix("transformer.")
    if name == "lm_head.weight" or name.endswith(_DROPPED_SUFFIXES):
        return None
    return name


def load_checkpoint(directory: Path) -> tuple[GPTConfig, dict[str, HostTensor]]:
    """Read config.json and model.safetensors of a Hugging Face GPT-2 directory and check they agree."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such directory")
    config = GPTConfig.from_hf_json(directory / "config.json")
    model_file = directory / "model.safetensors"
    if not model_file.exists():
        others = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.safetensors"))
        hint = f" (found {', '.join(others)}; re-save with save_pretrained(..., safe_serialization=True))" if others else ""
        raise CheckpointError(f"{model_file}: missing{hint}")
    tensors = {}
    for name, tensor in read_safetensors(model_file).items():
        bare = bare_name(name)
        if bare is not None:
            tensors[bare] = dataclasses.replace(tensor, name=bare)
    expected = expected_shapes(config)
    implied = (f"config.json says n_layer={config.n_layer}, n_embd={config.n_embd}, "
               f"vocab_size={config.vocab_size}, n_positions={config.n_positions}")
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise CheckpointError(f"{model_file}: missing tensor {missing[0]}"
                              f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; {implied}")
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise CheckpointError(f"{model_file}: unexpected tensor {unexpected[0]}"
                              f"{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}; {implied}")
    for name, shape in expected.items():
        if tensors[name].shape != shape:
            raise CheckpointError(f"{model_file}: tensor {name} has shape {list(tensors[name].shape)}, "
                                  f"expected {list(shape)} ({implied})")
    return config, tensors


def nest_params(flat: dict, n_layer: int) -> dict:
    """Bare HF names -> picoGPT's nested dict: {'wte', 'wpe', 'blocks': [...], 'ln_f'}."""
    def norm(prefix):
        return {"g": flat[prefix + ".weight"], "b": flat[prefix + ".bias"]}

    def dense(prefix):
        return {"w": flat[prefix + ".weight"], "b": flat[prefix + ".bias"]}

    blocks = [{
        "ln_1": norm(f"h.{i}.ln_1"),
        "attn": {"c_attn": dense(f"h.{i}.attn.c_attn"), "c_proj": dense(f"h.{i}.attn.c_proj")},
        "ln_2": norm(f"h.{i}.ln_2"),
        "mlp": {"c_fc": dense(f"h.{i}.mlp.c_fc"), "c_proj": dense(f"h.{i}.mlp.c_proj")},
    } for i in range(n_layer)]
    return {"wte": flat["wte.weight"], "wpe": flat["wpe.weight"], "blocks": blocks, "ln_f": norm("ln_f")}


def leaves(params) -> list:
    """Every array of a nested parameter dict (nest_params' layout), in a fixed order."""
    if isinstance(params, dict):
        return [leaf for value in params.values() for leaf in leaves(value)]
    if isinstance(params, list):
        return [leaf for value in params for leaf in leaves(value)]
    return [params]


def write_safetensors(path: Path, tensors: Iterable[tuple[str, tuple[int, ...], Callable[[], object]]],
                      on_tensor: Callable[[str], None] | None = None) -> None:
    """Write float32 tensors one at a time, so a 1558M checkpoint never sits in memory whole.

    Each entry is (name, shape, make) where make() returns a C-contiguous float32 buffer.
    """
    tensors = list(tensors)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in tensors:
        nbytes = math.prod(shape) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep tensor data 8-byte aligned, as safetensors does
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for name, shape, make in tensors:
            data = memoryview(make()).cast("B")
            if len(data) != math.prod(shape) * 4:
                raise ValueError(f"tensor {name}: made {len(data)} bytes for shape {shape}")
            f.write(data)
            if on_tensor is not None:
                on_tensor(name)
