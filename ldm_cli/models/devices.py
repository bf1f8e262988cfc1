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


BF16_MIN_UNET_WIDTH = 256  # SD-sized UNets (first width 320); the narrow demo/tiny UNets are overhead-bound


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 matmul flags (avx512_bf16, amx_bf16); [] when it has none or we cannot tell."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]


def auto_cpu_dtype(unet_config: dict | None = None) -> tuple[str, str]:
    """What `--dtype auto` runs on the CPU, and why (recorded as the image's "dtype_reason").

    bf16 only where the CPU has native bf16 AND the UNet is wide enough for matmuls to dominate:
    benchmarks/results/cpu_dtype.json measured both halves of that rule (README Performance)."""
    flags = cpu_bf16_flags()
    if not flags:
        return "fp32", "auto: this CPU has no native bf16 (avx512_bf16/AMX), where bf16 is emulated and slower"
    width = (unet_config or {}).get("block_out_channels", [0])[0]
    if width < BF16_MIN_UNET_WIDTH:
        return "fp32", (f"auto: the CPU has {'+'.join(flags)}, but this UNet is narrow (first width {width} < "
                        f"{BF16_MIN_UNET_WIDTH}), where bf16 measured no faster than fp32")
    return "bf16", (f"auto: the CPU has native bf16 ({'+'.join(flags)}) and the UNet is SD-sized (first width {width}): "
                    "bf16 measured faster with the picture kept (benchmarks/results/cpu_dtype.json)")


def generation_dtype(requested: str, device: str, unet_config: dict | None):
    """(torch dtype, reason) for `ldm generate`: auto on the CPU follows auto_cpu_dtype; the rest as resolve_dtype."""
    import torch

    if requested == "auto" and device == "cpu":
        name, reason = auto_cpu_dtype(unet_config)
        return {"fp32": torch.float32, "bf16": torch.bfloat16}[name], reason
    dtype = resolve_dtype(requested, device)
    reason = f"--dtype {requested}" if requested != "auto" else f"auto: {dtype_name(dtype)} on {device}"
    return dtype, reason
