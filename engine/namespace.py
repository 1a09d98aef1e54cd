"""The array namespace of the engine's inputs: array_api_compat's, looked up once per array type.

array_api_compat.array_namespace inspects its arguments on every call (~3 us); a decode step of 124M
asks about 240 times. The namespace depends only on the arrays' types (a NumPy array, a JAX tracer, a
torch tensor, an array_api_strict array, ...), so it is remembered per tuple of types.
"""

from __future__ import annotations

from array_api_compat import array_namespace as _lookup

_BY_TYPES: dict[tuple[type, ...], object] = {}


def array_namespace(*arrays):
    types = tuple(map(type, arrays))
    xp = _BY_TYPES.get(types)
    if xp is None:
        xp = _BY_TYPES[types] = _lookup(*arrays)
    return xp
