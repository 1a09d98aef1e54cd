"""TF32 for PyTorch's float32 matmuls on CUDA: one switch, shared by the torch adapter and the HF peer
(which runs torch itself), so that both compute float32 products the same way."""

from __future__ import annotations


def set_cuda_tf32(enabled: bool) -> None:
    """float32 matmuls on CUDA: TF32 tensor cores, or IEEE float32 (torch's default)."""
    import torch
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; allow_tf32 is its older spelling
        matmul.fp32_precision = "tf32" if enabled else "ieee"
    else:
        matmul.allow_tf32 = enabled
