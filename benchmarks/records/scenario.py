"""A Scenario: one thing the bench measures (model x numerics x batch x prompt length x new tokens, by one runner
on one device), as a suite expands it, a worker measures it and a Result holds it."""

from __future__ import annotations

import dataclasses

from .labels import is_peer, numerics_label, where_label, worker_label


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
    precision: str = "float32"
    weights: str | None = None  # None: the weights are stored in dtype
    mesh: str | None = None     # 'dp=2,tp=4': the model split over a JAX device mesh (jax, jax-loop)
    threads: int | None = None  # CPU threads (cores) the runner may use; None: the library's default

    @property
    def numerics(self) -> str:
        return numerics_label(self.dtype, self.precision, self.weights)

    @property
    def workload(self) -> str:
        """What is measured, whoever runs it: rows with the same workload share a table section."""
        return f"{self.model} {self.numerics} b{self.batch} p{self.prompt_len} n{self.new_tokens}"

    @property
    def where(self) -> str:
        """'jax', 'jax:gpu', 'jax[dp=2,tp=4]', 'numpy@1t': the runner, its device, mesh and threads."""
        return where_label(self.runner, self.device, self.mesh, self.threads)

    @property
    def id(self) -> str:
        return f"{self.model}/{self.where}/{self.numerics}/b{self.batch}/p{self.prompt_len}/n{self.new_tokens}"

    @property
    def is_peer(self) -> bool:
        return is_peer(self.runner)

    @property
    def label(self) -> str:
        return worker_label(self.runner, self.device, self.mesh, self.precision, self.threads)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"id": self.id, "numerics": self.numerics}

    @classmethod
    def from_json(cls, data: dict) -> "Scenario":
        """A Scenario from its JSON, or from a result's (its own fields picked out; id and numerics follow)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
