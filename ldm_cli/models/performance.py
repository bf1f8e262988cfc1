"""Fast paths for generation: each one a switch, measured by benchmarks/ and kept in parity by tests.

    SDPA          every attention layer uses torch's scaled_dot_product_attention (always on:
                  it never materialises the [B*heads, N, N] score matrix, see benchmarks/)
    channels_last NHWC memory format for the UNet (--channels-last; slower on our 2-core CPU)
    compile       torch.compile of the UNet (--compile): a one-time compile pays off over many images
    offload       accelerate CPU offload for small GPUs (--offload): each model waits in CPU memory
                  and moves to the GPU only while it runs
    vae_tiling    decode the VAE in overlapping tiles (--vae-tiling): bounded memory for large images
    backend       torch, or openvino (--backend openvino): OpenVINO runs the UNet (models/backends.py)

Slicing (decoding a batch one image at a time) is what ldm always does, so it has no switch.
The guidance fast paths live in sampling.py: one batched UNet call for [uncond, cond], and no
unconditional pass at all when g <= 1.

Imports of torch/diffusers/accelerate stay inside functions: config.py imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldm_cli.errors import UsageError


@dataclass(frozen=True)
class PerformanceSettings:
    channels_last: bool = False
    compile: bool = False
    offload: bool = False
    vae_tiling: bool = False
    backend: str = "torch"  # or "openvino"

    def enabled(self) -> list[str]:
        switches = [name for name, on in vars(self).items() if on is True]
        return switches + ([self.backend] if self.backend != "torch" else [])


def check_device(perf: PerformanceSettings, device: str) -> None:
    """--offload only means something when a GPU runs the models; refuse it elsewhere (before loading)."""
    if perf.offload and not device.startswith("cuda"):
        raise UsageError(
            f"--offload keeps weights in CPU memory and moves each model to the GPU only while it runs; "
            f"it needs --device cuda (this run uses {device}); drop --offload"
        )


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matmul instructions (AVX512-BF16 or AMX), or when we cannot tell.

    Without them oneDNN emulates bf16 and a bf16 step is ~2.7x slower than fp32 (benchmarks/results).
    """
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    except OSError:
        return True
    if flags is None:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def apply_fast_paths(components, device: str, perf: PerformanceSettings) -> None:
    """Switch the loaded components to the requested fast paths, in place."""
    import torch

    use_sdpa(components.unet, components.vae)
    if perf.channels_last:
        components.unet.to(memory_format=torch.channels_last)
    if perf.vae_tiling:
        components.vae.enable_tiling()
    if perf.offload:
        offload(components, device)
    if perf.compile:
        compile_unet(components.unet)


def use_sdpa(*models) -> None:
    """Route attention through torch.nn.functional.scaled_dot_product_attention (diffusers' AttnProcessor2_0)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for model in models:
        if hasattr(model, "set_attn_processor") and getattr(model, "attn_processors", None):
            model.set_attn_processor(AttnProcessor2_0())


def use_classic_attention(*models) -> None:
    """The pre-SDPA attention (explicit softmax(QK^T)V): only for benchmarks to measure what SDPA saves."""
    from diffusers.models.attention_processor import AttnProcessor

    for model in models:
        if getattr(model, "attn_processors", None):
            model.set_attn_processor(AttnProcessor())


def compile_unet(unet, backend: str = "inductor") -> None:
    """Compile the UNet's forward in place (nn.Module.compile keeps the object, its config and hooks).

    Inductor's FX graph and AOTAutograd caches (on by default in torch 2.13) make a later process's
    compile of the same UNet, size and dtype much cheaper (benchmarks/results/compile.json), but their
    default home is /tmp/torchinductor_$USER, which a reboot empties: keep them in ldm's cache
    instead, unless TORCHINDUCTOR_CACHE_DIR already says where."""
    import os

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
    unet.compile(backend=backend, fullgraph=False, dynamic=False)


def inductor_cache_dir():
    """Where --compile keeps torch inductor's compiled artefacts: $LDM_CACHE_DIR/inductor."""
    from ldm_cli.files.hashing import cache_dir

    return cache_dir() / "inductor"


def offload(components, device: str) -> None:
    """Model-level CPU offload (as diffusers' enable_model_cpu_offload): a chain of accelerate hooks
    moves text encoder -> UNet -> VAE to `device` in turn, each pushing the previous one back to the CPU."""
    import torch
    from accelerate import cpu_offload_with_hook

    previous = None
    for model in (components.text_encoder, components.unet, components.vae):
        model.to("cpu")
        _, previous = cpu_offload_with_hook(model, torch.device(device), prev_module_hook=previous)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
