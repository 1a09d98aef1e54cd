"""Named, composable scenarios: model x batch x prompt length x new tokens x dtype x backend x device.

A suite file (benchmarks/suites/*.toml) has [defaults] and [[group]]s; every list-valued field of a
group multiplies out. Command-line overrides replace a field in every group.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path

from engine.errors import ArrayGPTError

SUITES_DIR = Path(__file__).parent / "suites"
PEERS = ("hf", "picogpt")
_AXES = ("model", "dtype", "batch", "prompt_len", "new_tokens")
_KNOWN = set(_AXES) | {"name", "warmup", "repeats", "peers", "backends"}


@dataclasses.dataclass(frozen=True)
class Scenario:
    group: str
    model: str
    runner: str          # a backend name ("numpy", "jax", ...) or a peer ("hf", "picogpt")
    device: str | None
    dtype: str
    batch: int
    prompt_len: int
    new_tokens: int
    warmup: int = 1
    repeats: int = 3

    @property
    def workload(self) -> str:
        """What is measured, whoever runs it: rows with the same workload share a table section."""
        return f"{self.model} {self.dtype} b{self.batch} p{self.prompt_len} n{self.new_tokens}"

    @property
    def id(self) -> str:
        where = self.runner + (f":{self.device}" if self.device else "")
        return f"{self.model}/{where}/{self.dtype}/b{self.batch}/p{self.prompt_len}/n{self.new_tokens}"

    @property
    def is_peer(self) -> bool:
        return self.runner in PEERS

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"id": self.id}


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
        suite = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ArrayGPTError(f"no suite '{name_or_path}' (suites: {', '.join(available_suites())}, or a .toml path)") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ArrayGPTError(f"{path}: not a readable suite ({err})") from None
    for group in suite.get("group", []):
        unknown = set(group) - _KNOWN
        if unknown:
            raise ArrayGPTError(f"{path}: group '{group.get('name', '?')}' has unknown field(s) {sorted(unknown)}")
    if not suite.get("group"):
        raise ArrayGPTError(f"{path}: no [[group]] of scenarios")
    return suite | {"name": path.stem, "path": str(path)}


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def expand(suite: dict, backends: list[tuple[str, str | None]], overrides: dict | None = None,
           peers: list[str] | None = None) -> list[Scenario]:
    """Every scenario of the suite for the given backends; overrides replace a field in every group."""
    defaults = suite.get("defaults", {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    scenarios = []
    for group in suite["group"]:
        spec = defaults | group | overrides
        group_peers = peers if peers is not None else _as_list(spec.get("peers", []))
        bad = [p for p in group_peers if p not in PEERS]
        if bad:
            raise ArrayGPTError(f"unknown peer '{bad[0]}' (peers: {', '.join(PEERS)})")
        runners = list(backends) + [(peer, None) for peer in group_peers]
        for (runner, device), model, dtype, batch, prompt_len, new_tokens in itertools.product(
                runners, *(_as_list(spec[axis]) for axis in _AXES)):
            if runner == "picogpt" and (batch != 1 or dtype != "float32"):
                continue  # picoGPT runs one float32 sequence at a time
            scenarios.append(Scenario(group=spec.get("name", "group"), model=str(model), runner=runner,
                                      device=device, dtype=dtype, batch=int(batch), prompt_len=int(prompt_len),
                                      new_tokens=int(new_tokens), warmup=int(spec.get("warmup", 1)),
                                      repeats=int(spec.get("repeats", 3))))
    scenarios = list({s.id: s for s in reversed(scenarios)}.values())[::-1]  # overrides can make groups coincide
    for s in scenarios:
        if min(s.batch, s.prompt_len, s.new_tokens, s.repeats) < 1 or s.warmup < 0:
            raise ArrayGPTError(f"scenario {s.id}: batch, prompt_len, new_tokens and repeats must be >= 1")
    return scenarios
