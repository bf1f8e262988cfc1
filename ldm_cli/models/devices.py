"""Device and dtype resolution. torch is imported inside the functions so `ldm --help` stays fast."""

from __future__ import annotations

from ldm_cli.errors import UsageError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")


def check_device_and_dtype(device: str, dtype: str) -> None:
    """The flags' spelling only (no torch): whether the hardware is there is resolve_device's job."""
    if dtype not in DTYPE_CHOICES:
        raise UsageError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    if device not in ("auto", "cpu", "mps", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"--device {device!r}: choose auto, cpu, cuda, cuda:N or mps")


def resolve_device(name: str) -> str:
    """auto -> cuda, then mps, then cpu. An explicit device that is not there is a usage error."""
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible; use --device cpu or auto")
    if name == "mps" and not has_mps:
        raise UsageError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    return name


def resolve_dtype(name: str, device: str):
    """auto -> float16 on CUDA (the usual inference precision), float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def dtype_name(dtype) -> str:
    import torch

    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
