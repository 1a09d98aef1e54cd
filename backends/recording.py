"""Recording a step once and replaying it, as a CUDA graph does: one Recorder for every adapter that
records (torch on CUDA and CuPy bring their graph, backends/torch_graphs.py and cupy_graphs.py), and
HostGraph, a CPU stand-in with the same semantics, so the recorded decode runs end to end in `make test`.

What every recording keeps, as a CUDA graph would:
- one recording per shape key: the static arguments and every other array's shape and dtype (a generation
  in the same shape bucket, engine/buckets.py, replays it; another bucket or batch size records anew);
- its inputs are static buffers cloned from the first call's arrays, except the fixed arguments (the
  weights), which are used where they are and must be the same arrays at every later call; a later call's
  arrays are copied into the static buffers, unless it passes a static buffer itself (the KV cache, written
  in place inside the step, and anything the previous replay returned come back as they are);
- its outputs are static too: every replay writes into the arrays that the first returned;
- a graph captures once: a second capture is refused.
The only code a GPU runs that the CPU stand-in does not is the graph's own capture and replay.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Protocol

from .base import BackendError


class RecordingError(BackendError):
    """A recording was used as it cannot be (a second capture, other weights than it was recorded with)."""


class Graph(Protocol):
    def capture(self, run: Callable[[], Any]) -> Any:
        """Record run() (the step on the static inputs) once; its outputs are the static outputs."""

    def replay(self) -> None:
        """Run what was recorded again: the static outputs then hold this call's results."""


def flatten(tree) -> list:
    """The leaves of nested lists, tuples and dicts, in order (dicts by their keys' order)."""
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in flatten(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in flatten(item)]
    return [tree]


def unflatten(tree, leaves: list):
    """tree's structure filled with leaves (as flatten read them)."""
    it = iter(leaves)

    def build(node):
        if isinstance(node, dict):
            return {key: build(node[key]) for key in node}
        if isinstance(node, (list, tuple)):
            return type(node)(build(item) for item in node)
        return next(it)
    return build(tree)


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


class HostGraph:
    """A graph on the CPU: capture runs the step once and keeps its outputs; replay runs the recorded
    function again on the static inputs and copies each result into its static output, in place, as the
    kernels of a replayed CUDA graph write their buffers. A result that is a static buffer itself (the
    cache, written in place) needs no copy."""

    def __init__(self, copy: Callable[[Any, Any], None]):
        self.copy, self._run, self.outputs = copy, None, None

    def capture(self, run):
        if self._run is not None:
            raise RecordingError("this graph has already captured a step: a graph captures once")
        self._run = run
        self.outputs = run()
        return self.outputs

    def replay(self):
        for static, fresh in zip(flatten(self.outputs), flatten(self._run())):
            if static is not fresh:
                self.copy(static, fresh)


class Recording:
    """One captured step: static inputs, the graph, static outputs. The fixed arguments (the weights) are
    checked by identity as whole arguments, never walked leaf by leaf: a call's host work is the few small
    arrays it copies in (the decode hot path on a GPU)."""

    def __init__(self, fn, args: tuple, static: dict, fixed: frozenset, graph: Graph, clone):
        self.args = [arg if i in fixed else unflatten(arg, [clone(x) if _is_array(x) else x for x in flatten(arg)])
                     for i, arg in enumerate(args)]
        self.fixed = fixed
        self.inputs = [flatten(arg) if i not in fixed else None for i, arg in enumerate(self.args)]
        self.graph = graph
        started = time.perf_counter()
        self.outputs = graph.capture(lambda: fn(*self.args, **static))
        self.capture_s = time.perf_counter() - started

    def __call__(self, args: tuple, copy):
        for i, arg in enumerate(args):
            if i in self.fixed:
                if arg is not self.args[i]:
                    raise RecordingError("a recorded step was called with other weights than it was recorded with; "
                                         "each model records its own steps")
                continue
            for static, leaf in zip(self.inputs[i], flatten(arg)):
                if static is not leaf and _is_array(leaf):
                    copy(static, leaf)
        self.graph.replay()
        return self.outputs


class Recorder:
    """fn recorded once per shape key and replayed after: what Backend.record returns for an adapter that
    records. make_graph() gives a fresh graph for each recording; clone(x) a new array equal to x; copy(dst,
    src) writes src into dst in place. fixed_argnames: arguments used where they are (the weights)."""

    def __init__(self, fn, *, static_argnames=(), fixed_argnames=(), make_graph, clone, copy):
        self.fn, self.static_argnames = fn, tuple(static_argnames)
        names = list(inspect.signature(fn).parameters)  # positional names, so fixed ones are found by position
        self.fixed = frozenset(names.index(name) for name in fixed_argnames)
        self.make_graph, self.clone, self.copy = make_graph, clone, copy
        self.recordings: dict = {}

    def key(self, args, static) -> tuple:
        leaves = flatten(args)
        shapes = tuple((tuple(leaf.shape), str(leaf.dtype)) if _is_array(leaf) else ("value", leaf) for leaf in leaves)
        return tuple(sorted(static.items(), key=lambda item: item[0])), shapes

    def __call__(self, *args, **kwargs):
        static = {name: kwargs.pop(name) for name in self.static_argnames if name in kwargs}
        if kwargs:
            raise TypeError(f"a recorded step takes its arrays by position; got {', '.join(kwargs)} by name")
        key = self.key(args, static)
        recording = self.recordings.get(key)
        if recording is None:
            recording = self.recordings[key] = Recording(self.fn, args, static, self.fixed, self.make_graph(),
                                                         self.clone)
        return recording(args, self.copy)

    @property
    def capture_s(self) -> float:
        """Seconds spent capturing, over every recording so far."""
        return sum(r.capture_s for r in self.recordings.values())
