"""Which engine runs the UNet: torch (the default) or OpenVINO (`--backend openvino`, optional package).

OpenVINO replaces only the UNet call: ldm's own loop, schedulers, guidance and LoRA merges stay, so
every sampler keeps working. What needs the torch UNet's insides is refused before any model loads.
The OpenVINO UNet itself lives in models/openvino_unet.py; this module imports no openvino at load.
"""

from __future__ import annotations

from ldm_cli.errors import UsageError

BACKENDS = ("torch", "openvino")
OPENVINO_VERSION = "2026.4.1"  # pinned in pyproject.toml's `openvino` extra
INSTALL_HINT = f"pip install 'ldm-cli[openvino]' (or pip install openvino=={OPENVINO_VERSION})"


def check_backend(backend: str, *, device: str, dtype: str, compile: bool = False, channels_last: bool = False,
                  cache_interval: int = 1, attention_maps: bool = False, token_merging: float = 0.0) -> None:
    """--backend spelled right, its package importable, and no flag it cannot honour (one line each)."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: choose torch or openvino")
    if backend == "torch":
        return
    refusals = [
        (device not in ("auto", "cpu"), f"--device {device}: --backend openvino runs the UNet on the CPU; "
                                        "use --device cpu, or --backend torch for the GPU"),
        (dtype == "fp16", "--dtype fp16: OpenVINO's CPU plugin runs the UNet in bf16 or f32; "
                          "use --dtype auto (its default), bf16 or fp32"),
        (compile, "--compile: torch.compile cannot compile a UNet that OpenVINO runs; drop --compile or use --backend torch"),
        (channels_last, "--channels-last: a torch memory format; OpenVINO picks its own layout, so drop it "
                        "or use --backend torch"),
        (cache_interval > 1, f"--cache-interval {cache_interval}: DeepCache re-runs layers inside the torch UNet, "
                             "which OpenVINO runs as one graph; drop it or use --backend torch"),
        (token_merging > 0, f"--token-merging {token_merging:g}: ToMe hooks into the torch UNet's attention layers, "
                            "which OpenVINO replaces; drop it or use --backend torch"),
        (attention_maps, "--attention-maps: the maps are read from the torch UNet's attention layers, which "
                         "OpenVINO replaces; drop it or use --backend torch"),
    ]
    for refused, message in refusals:
        if refused:
            raise UsageError(message)
    require_openvino()


def require_openvino():
    """The openvino module, or a usage error naming the install command."""
    try:
        import openvino
    except ImportError:
        raise UsageError(f"--backend openvino needs the optional openvino package: {INSTALL_HINT}") from None
    return openvino


def openvino_precision(dtype: str) -> tuple[str, str]:
    """(OpenVINO inference precision "bf16" or "f32", why) for --dtype; auto is OpenVINO's own CPU default."""
    if dtype == "fp32":
        return "f32", "--dtype fp32"
    if dtype == "bf16":
        return "bf16", "--dtype bf16"
    core = require_openvino().Core()
    name = "bf16" if core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string() == "bf16" else "f32"
    why = "native bf16 on this CPU" if name == "bf16" else "no native bf16 on this CPU"
    return name, f"auto: OpenVINO's default CPU precision ({why})"


def torch_dtype_for(precision: str):
    """The torch dtype of the weights OpenVINO is exported from (and of the text encoder and VAE):
    bf16 weights for a bf16 UNet hold what it computes with, at half fp32's memory."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32
