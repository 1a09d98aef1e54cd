"""Suites of named, composable scenarios (records/scenario.py): model x batch x prompt length x new tokens x
dtype x precision x weights x backend x device.

A suite file (benchmarks/suites/*.toml) has [defaults] and [[group]]s; every list-valued field of a
group multiplies out. Command-line overrides replace a field in every group.

The numerics of a scenario are its dtype (the compute dtype), its precision (float32 products in IEEE
float32, or tf32) and its weights' dtype (the dtype the products read; by default the dtype). A
scenario id names them only where they differ from the plain dtype, so 'float32' ids stay as they were:
'124M/jax:gpu/float32+tf32/b1/p16/n128', '124M/torch/float32+bfloat16-weights/b1/p16/n128'.
"""

from __future__ import annotations

import functools
import itertools
import tomllib
from pathlib import Path

from arraygpt.backends import BACKENDS
from arraygpt.backends.base import DTYPE_NAMES, PRECISIONS
from arraygpt.engine.config import ITEMSIZE
from arraygpt.engine.errors import ArrayGPTError
from arraygpt.engine.families import PRESETS as MODEL_PRESETS, read_config
from arraygpt.engine.files import read_text

from .judge.roofline import QUANTIZED
from .judge.validity import check_rules
from .records.scenario import Scenario
from .runners import PEERS, peer_runs

SUITES_DIR = Path(__file__).parent / "suites"
_AXES = ("model", "dtype", "precision", "weights", "mesh", "threads", "batch", "prompt_len", "new_tokens")
_KNOWN = set(_AXES) | {"name", "warmup", "repeats", "peers", "backends"}
_AXIS_DEFAULTS = {"precision": "float32", "weights": None, "mesh": None, "threads": None}


def suite_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return SUITES_DIR / f"{name_or_path}.toml"


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> dict:
    path = suite_path(name_or_path)
    try:
        suite = tomllib.loads(read_text(path))
    except FileNotFoundError:
        raise ArrayGPTError(f"no suite '{name_or_path}' (suites: {', '.join(available_suites())}, or a .toml path)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ArrayGPTError(f"{path}: not a readable suite ({err})") from None
    check_suite(suite, path)
    return suite | {"name": path.stem, "path": str(path)}


# What each suite field holds: (the type of one value, the smallest allowed, whether a list may be given).
_FIELD_TYPES = {"model": (str, None, True), "dtype": (str, None, True), "precision": (str, None, True),
                "weights": (str, None, True), "mesh": (str, None, True), "batch": (int, 1, True),
                "prompt_len": (int, 1, True), "new_tokens": (int, 1, True), "threads": (int, 1, True), "warmup": (int, 0, False),
                "repeats": (int, 1, False), "name": (str, None, False), "prefill_batch": (int, 1, True), "peers": (str, None, True),
                "backends": (str, None, True)}


def check_values(table: dict, where: str = "") -> None:
    """Each field's values of the right type and range, dtypes and precisions known: for a suite's tables
    and for the command line's overrides (--dtypes float8 is one line before any worker starts)."""
    for field, value in table.items():
        if field not in _FIELD_TYPES or value is None:
            continue
        kind, least, listable = _FIELD_TYPES[field]
        values = value if listable and isinstance(value, list) else [value]
        if isinstance(value, list) and not values and field not in ("peers", "backends"):
            raise ArrayGPTError(f"{where}{field} is an empty list")
        for v in values:
            good = isinstance(v, kind) and not isinstance(v, bool) and (least is None or v >= least)
            if field in ("mesh", "threads") and v in ("", None, 0):
                good = True  # one device; the library's own thread count
            if not good:
                want = f"an integer >= {least}" if kind is int else "a string"
                raise ArrayGPTError(f"{where}{field} must be {want}{' or a list of them' if listable else ''}, got {v!r}")
            known = DTYPE_NAMES + tuple(QUANTIZED) if field == "weights" else DTYPE_NAMES
            if field in ("dtype", "weights") and v not in known:
                raise ArrayGPTError(f"{where}unknown {field} {v!r} (choose from {', '.join(known)})")
            if field == "precision" and v not in PRECISIONS:
                raise ArrayGPTError(f"{where}unknown precision {v!r} (choose from {', '.join(PRECISIONS)})")


def check_suite(suite: dict, path) -> None:
    """One line naming the group and field, for a suite that is missing a field or holds a wrong value."""
    groups = suite.get("group")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise ArrayGPTError(f"{path}: no [[group]] of scenarios")
    defaults = suite.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ArrayGPTError(f"{path}: [defaults] must be a table")
    if "validity" in suite:
        check_rules(suite["validity"], f"{path}: ")
    if suite.get("device", "any") not in ("any", "gpu"):
        raise ArrayGPTError(f"{path}: device must be \"gpu\" (a suite for a GPU machine) or absent, got "
                            f"{suite['device']!r}")
    rounds = suite.get("rounds", 1)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ArrayGPTError(f"{path}: rounds must be an integer >= 1, got {rounds!r}")
    for where, table in [("[defaults]", defaults)] + [(f"group '{g.get('name', i)}'", g) for i, g in enumerate(groups)]:
        unknown = set(table) - _KNOWN
        if unknown:
            raise ArrayGPTError(f"{path}: {where} has unknown field(s) {sorted(unknown)}")
        check_values(table, f"{path}: {where}: ")
    for i, group in enumerate(groups):
        missing = [axis for axis in _AXES if axis not in _AXIS_DEFAULTS and axis not in defaults and axis not in group]
        if missing:
            raise ArrayGPTError(f"{path}: group '{group.get('name', i)}' has no {missing[0]} (in it or in [defaults])")


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


@functools.cache
def model_family(spec: str) -> str:
    """A model's family (engine/families.py): a preset's, or a directory's config.json's; "gpt2" where it is not
    known here (a hub id not yet downloaded: its worker says what it is)."""
    if spec in MODEL_PRESETS:
        return MODEL_PRESETS[spec].family
    try:
        return read_config(Path(spec).expanduser() / "config.json").family
    except Exception:  # not a directory, or a damaged one: the model's own check reports it
        return "gpt2"


def expand(suite: dict, backends: list[tuple[str, str | None]], overrides: dict | None = None,
           peers: list[str] | None = None, peer_devices: list[str | None] = (None,)) -> list[Scenario]:
    """Every scenario of the suite for the given backends; overrides replace a field in every group.
    Peers run on each of peer_devices (None: the CPU; 'gpu' when the backends run on a GPU)."""
    defaults = suite.get("defaults", {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_values(overrides, "command line: ")
    scenarios = []
    for group in suite["group"]:
        spec = _AXIS_DEFAULTS | defaults | group | overrides
        # --batch-sizes reshapes decode groups; a prefill group (every new_tokens 1) keeps its batch unless
        # --prefill-batch-sizes asks, or the command line also set new_tokens (it shaped the workload itself).
        prefill_only = all(int(n) == 1 for n in _as_list((defaults | group).get("new_tokens", [])))
        if prefill_only and "new_tokens" not in overrides:
            spec["batch"] = overrides.get("prefill_batch", (defaults | group).get("batch"))
        group_peers = peers if peers is not None else _as_list(spec.get("peers", []))
        bad = [p for p in group_peers if p not in PEERS]
        if bad:
            raise ArrayGPTError(f"unknown peer '{bad[0]}' (peers: {', '.join(PEERS)})")
        # A group may name the backends it is for ("backends = ['jax-loop']"); the others skip it.
        mine = [(name, device) for name, device in backends
                if "backends" not in spec or name in _as_list(spec["backends"])]
        runners = mine + [(peer, device) for peer in group_peers for device in peer_devices]
        for (runner, device), model, dtype, precision, weights, mesh, threads, batch, prompt_len, new_tokens in \
                itertools.product(runners, *(_as_list(spec[axis]) for axis in _AXES)):
            mesh = mesh or None  # "" in a list means one device
            threads = int(threads) if threads else None
            if weights == dtype:
                weights = None
            if weights and ITEMSIZE.get(weights, 0) > ITEMSIZE.get(dtype, 0):
                continue  # weights wider than the arithmetic reading them: a list product's empty corner
            if runner in PEERS and not peer_runs(runner, device, dtype, precision, weights, int(batch), mesh,
                                                 model_family(str(model))):
                continue
            if weights in QUANTIZED and runner not in PEERS:
                continue  # a quantized format is a peer's own row (llama.cpp's Q8_0), never ours
            lacking = [d for d in (dtype, weights) if d and runner in BACKENDS and d not in BACKENDS[runner].dtypes]
            if lacking:
                if "dtype" in overrides or "weights" in overrides:  # asked for on the command line: say so
                    raise ArrayGPTError(f"backend {runner} has no {lacking[0]} (it has "
                                        f"{', '.join(BACKENDS[runner].dtypes)}); leave it out of --backends or pick "
                                        "another --dtypes / --weights")
                continue  # a suite's dtype that this library lacks: that group is not for it
            if mesh and runner not in PEERS and not (runner in BACKENDS and BACKENDS[runner].meshes):
                continue  # only backends that split a model over a mesh get mesh rows
            scenarios.append(Scenario(group=spec.get("name", "group"), model=str(model), runner=runner,
                                      device=device, dtype=dtype, batch=int(batch), prompt_len=int(prompt_len),
                                      new_tokens=int(new_tokens), warmup=int(spec.get("warmup", 1)),
                                      repeats=int(spec.get("repeats", 3)), precision=precision, weights=weights,
                                      mesh=mesh, threads=threads))
    scenarios = list({s.id: s for s in reversed(scenarios)}.values())[::-1]  # overrides can make groups coincide
    for s in scenarios:
        if min(s.batch, s.prompt_len, s.new_tokens, s.repeats) < 1 or s.warmup < 0:
            raise ArrayGPTError(f"scenario {s.id}: batch, prompt_len, new_tokens and repeats must be >= 1")
        registered = BACKENDS.get(s.runner)
        if s.precision == "tf32" and registered and (not registered.tf32 or s.device == "cpu"):
            with_tf32 = ", ".join(n for n, r in BACKENDS.items() if r.tf32)
            raise ArrayGPTError(f"scenario {s.id}: backend {s.runner} has no tf32 products"
                                f"{' on the cpu' if registered.tf32 else ''} (tf32: {with_tf32} on an NVIDIA GPU)")
        if s.precision == "tf32" and (s.dtype != "float32" or s.weights):
            raise ArrayGPTError(f"scenario {s.id}: tf32 is a mode of float32 products; it needs dtype float32 "
                                "with float32 weights")
    return scenarios
