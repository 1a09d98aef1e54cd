"""safetensors files read by memory map and checked as untrusted input (HostTensor, read_safetensors), and
written one tensor at a time (write_safetensors). Nothing here knows a model's names: engine/checkpoint.py."""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
from pathlib import Path
from typing import Callable, Iterable

from .errors import CheckpointError

# safetensors dtype -> (struct format for memoryview.cast, bytes per element). BF16 has no struct
# format, and F16's ('e') casts only from Python 3.12: their 16-bit patterns travel as uint16 and the
# backend reads them as what they are (backends/host.py).
_DTYPES = {"F64": ("d", 8), "F32": ("f", 4), "F16": ("H", 2), "BF16": ("H", 2)}
_MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit


@dataclasses.dataclass(frozen=True)
class HostTensor:
    """A tensor still in the checkpoint file: a read-only, zero-copy view of the mapped bytes."""

    name: str
    dtype: str                 # safetensors code: "F32", "F16", "BF16", "F64"
    shape: tuple[int, ...]     # as stored in the file
    data: memoryview           # typed and shaped (BF16 as uint16); np.asarray(data) does not copy
    mapping: mmap.mmap | None = dataclasses.field(default=None, repr=False, compare=False)
    offset: int = 0            # where data starts in mapping

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


def _no_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_header(header: bytes, data_bytes: int, path) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """name -> (dtype, shape, begin, end), checked as the safetensors library checks a header: a JSON
    object without duplicate keys, each entry a known dtype, a shape of integers >= 0 and offsets that
    hold it; the tensors' data contiguous, without gaps or overlaps, covering the data section exactly."""
    try:
        parsed = json.loads(header, object_pairs_hook=_no_duplicate_keys)
        if not isinstance(parsed, dict):
            raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as err:  # RecursionError: JSON nested thousands deep
        raise CheckpointError(f"{path}: unreadable header ({str(err)[:120]})") from None
    entries = {}
    for name, info in parsed.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointError(f"{path}: __metadata__ must map names to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{path}: tensor {name}: malformed header entry {json.dumps(info)[:120]}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not name.isprintable():
            raise CheckpointError(f"{path}: tensor name {json.dumps(name)[:80]} has control characters")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name}: dtype {json.dumps(dtype)[:40]} is not supported "
                                  f"(supported: {', '.join(_DTYPES)})")
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise CheckpointError(f"{path}: tensor {name}: shape {json.dumps(shape)[:80]} is not a list of "
                                  "integers >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
                and offsets[0] <= offsets[1]):
            raise CheckpointError(f"{path}: tensor {name}: data_offsets {json.dumps(offsets)[:80]} are not two "
                                  "integers 0 <= begin <= end")
        begin, end = offsets
        if end - begin != math.prod(shape) * _DTYPES[dtype][1]:
            raise CheckpointError(f"{path}: tensor {name}: offsets [{begin}, {end}) do not hold shape "
                                  f"{list(shape)} of {dtype}")
        entries[name] = (dtype, tuple(shape), begin, end)
    position, last = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else f"leaves a gap at byte {position}"
            raise CheckpointError(f"{path}: tensor {name}: data [{begin}, {end}) {what}: a damaged header")
        position, last = end, name
    if position != data_bytes:
        if position > data_bytes:
            raise CheckpointError(f"{path}: tensor {last}: data ends {position - data_bytes} bytes past the end of "
                                  "the file: the file is truncated")
        raise CheckpointError(f"{path}: the tensors' data ends {data_bytes - position} bytes before the file does "
                              "(not a safetensors file, or a damaged header)")
    return entries


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
    if header_len > size - 8:
        raise CheckpointError(f"{path}: unreadable header (its length field says {header_len:,} bytes, but only "
                              f"{size - 8:,} follow it in this {size:,}-byte file): truncated or not a safetensors file")
    if header_len > _MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: unreadable header (its length field says {header_len:,} bytes, more than "
                              f"the {_MAX_HEADER_BYTES:,} a safetensors header may have): not a safetensors file")
    data_start = 8 + header_len
    # The data section's length as the header needs it: data_start is excluded from the 8 of the count.
    entries = parse_header(bytes(mapped[8:data_start]), size - data_start, path)
    whole = memoryview(mapped)
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        fmt = _DTYPES[dtype][0]
        raw = whole[data_start + begin:data_start + end]
        view = raw.cast(fmt, shape) if math.prod(shape) else raw.cast(fmt)  # memoryview has no zero-size shapes
        tensors[name] = HostTensor(name, dtype, shape, view, mapping=mapped, offset=data_start + begin)
    return tensors


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


def check_tensor_set(where, tensors: dict, expected: dict, implied: str, missing_hint: dict | None = None) -> None:
    """The tensors a checkpoint holds (bare name -> HostTensor) against the names and shapes its config implies:
    one line naming the first missing, unexpected or misshapen tensor and what the config says (implied).
    missing_hint: a sentence to add when a given tensor is the first missing one."""
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise CheckpointError(f"{where}: missing tensor {missing[0]}"
                              f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; {implied}"
                              + (f"; {missing_hint[missing[0]]}" if missing_hint and missing[0] in missing_hint else ""))
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise CheckpointError(f"{where}: unexpected tensor {unexpected[0]}"
                              f"{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}; {implied}")
    for name, shape in expected.items():
        if tensors[name].shape != shape:
            raise CheckpointError(f"{where}: tensor {name} has shape {list(tensors[name].shape)}, expected "
                                  f"{list(shape)} ({implied})")
