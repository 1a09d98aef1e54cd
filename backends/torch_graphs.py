"""How the torch adapter records a step (backends/recording.py): on CUDA a torch.cuda.CUDAGraph, on the CPU
the stand-in HostGraph; and the in-place cache write a recorded step needs (Backend.write_slot)."""

from __future__ import annotations

import torch

from .recording import HostGraph, RecordingError

# Runs of the step before its capture, on a side stream (torch's documented pattern): lazy initialisations
# (cuBLAS handles and workspaces, the allocator's blocks) happen there, never inside the capture.
WARMUP_RUNS = 3


def write_slot(cache, new, slot):  # [B, H, S, D], [B, H, 1, D], 0-d int slot -> the same cache, written
    """new into the cache at a slot that stays on the device: index_copy_ reads the index on the device (an
    integer index would reach the host, which a capture forbids; measured on the H100: notes/gpu-facts.md)."""
    return cache.index_copy_(2, torch.reshape(slot, (1,)).to(torch.int64), new)


class TorchCudaGraph:
    """A CUDA graph: warm-up runs on a side stream, one capture (torch.cuda.graph: its own stream and
    private memory pool, so the step's intermediates keep their addresses), replay per call."""

    def __init__(self, device: torch.device):
        self.device, self.graph, self.captured = device, torch.cuda.CUDAGraph(), False

    def capture(self, run):
        if self.captured:
            raise RecordingError("this graph has already captured a step: a graph captures once")
        self.captured = True
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    run()
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(self.graph):
                return run()

    def replay(self):
        self.graph.replay()


def copy_into(static, value):
    static.copy_(value)


def graph_for(device: torch.device):
    """A fresh graph for one recording on this device."""
    return (lambda: TorchCudaGraph(device)) if device.type == "cuda" else (lambda: HostGraph(copy_into))
