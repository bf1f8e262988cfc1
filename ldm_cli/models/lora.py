"""Apply LoRA-family files to a loaded model for `ldm generate --lora FILE[:SCALE]` (repeatable).

Each adapted module's update dW (models/lycoris.py: LoRA, LoCon, Tucker, LoHa, LoKr, full, DoRA) is
merged into the weight it adapts:  W <- W + scale * dW,  or for DoRA  W <- W + scale * (W' - W).
Files are read by models/lora_formats.py (kohya, diffusers, peft keys). Everything is checked
before the first weight changes: a file for another model is refused with one line, never half-applied.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ldm_cli.errors import ModelError, UsageError
from ldm_cli.models.lora_formats import LoraFile, Patch, read_lora_file
from ldm_cli.models.lycoris import decompose, delta_weight, rank_and_scale

BASES = {768: "SD1", 1024: "SD2", 2048: "SDXL"}  # cross-attention (text feature) width of each family
_TEXT_WIDTHS = {768: "SD1", 1024: "SD2", 1280: "SDXL"}
_CROSS_KV = re.compile(r"attn2[._]to_[kv]$")


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    scale: float = 1.0
    unet_scale: float | None = None  # A1111's <lora:NAME:TE:UNET>: the UNet's own weight; None -> scale

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


@dataclass
class LoraInfo:
    """What a LoRA-family file is, for `ldm inspect` and the generate log."""

    kind: str  # "lora" | "locon" | "loha" | "lokr" | "full" | "dora" (LoRA/LoCon with dora_scale)
    format: str  # "kohya" | "diffusers" | "peft"
    rank: int | None  # the most common rank (None: full-rank updates)
    alpha: float | None  # the most common alpha (None: not stored, i.e. alpha = rank)
    targets: list[str]  # "unet", "text_encoder"
    modules: int
    base: str  # "SD1" | "SD2" | "SDXL" | "unknown", guessed from the tensor shapes
    dora: bool = False
    algos: dict = field(default_factory=dict)  # {"lora": 128, "loha": 4}: modules per algorithm

    def summary(self) -> str:
        alpha = "" if self.alpha is None else f", alpha {self.alpha:g}"
        rank = "full rank" if self.rank is None else f"rank {self.rank}"
        return f"{self.format} {self.kind}, {rank}{alpha}, {self.modules} modules ({' + '.join(self.targets)})"


def parse_lora_arg(value: str) -> LoraSpec:
    """'file.safetensors' or 'file.safetensors:0.7'; checks the file exists (a usage error if not)."""
    path_text, scale = value, 1.0
    head, sep, tail = value.rpartition(":")
    if sep and head:
        try:
            scale = float(tail)
            path_text = head
        except ValueError:
            if Path(head).expanduser().is_file():  # FILE:abc names a real file: the scale is what is wrong
                raise UsageError(f"--lora {value}: the scale {tail!r} is not a number; use FILE:SCALE, e.g. {head}:0.8") from None
            # else a ':' inside the path itself
    if not math.isfinite(scale):
        raise UsageError(f"--lora {value}: the scale must be a finite number, e.g. FILE:0.8")
    path = Path(path_text).expanduser()
    if not path.is_file() and bundled_lora(path_text) is not None:
        path = bundled_lora(path_text)  # a name such as demo-lcm: ldm_cli/assets/loras/demo-lcm.safetensors
    if not path.is_file():
        names = ", ".join(bundled_lora_names()) or "none"
        raise UsageError(f"--lora {value}: no such file; pass a LoRA .safetensors file (or a bundled name: {names}), "
                         "optionally FILE:SCALE")
    if path.suffix != ".safetensors":
        raise UsageError(f"--lora {value}: expected a .safetensors LoRA file")
    return LoraSpec(path, scale)


BUNDLED_LORAS = Path(__file__).resolve().parent.parent / "assets" / "loras"


def bundled_lora(name: str) -> Path | None:
    """The LoRA shipped with ldm under this name (e.g. demo-lcm), or None; a real file of that name wins."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = BUNDLED_LORAS / f"{name}.safetensors"
    return path if path.is_file() else None


def bundled_lora_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED_LORAS.glob("*.safetensors")) if BUNDLED_LORAS.is_dir() else []


def describe_lora(path) -> dict:
    """What the file is (LoraInfo as a dict); ModelError for a file ldm cannot use as a LoRA."""
    lora = read_lora_file(Path(path), flag="LoRA")
    return asdict(_info(lora))


def _info(lora: LoraFile) -> LoraInfo:
    algos = Counter(_kind(p) for p in lora.patches)
    ranks = Counter(rank_and_scale(p.algo, p.tensors, p.alpha)[0] for p in lora.patches)
    alphas = Counter(p.alpha for p in lora.patches)
    dora = any("dora" in p.tensors for p in lora.patches)
    kind = algos.most_common(1)[0][0] if algos else "lora"
    if "locon" in algos and kind == "lora":
        kind = "locon"
    return LoraInfo(
        kind="dora" if dora and kind in ("lora", "locon") else kind,
        format=lora.format,
        rank=ranks.most_common(1)[0][0] if ranks else None,
        alpha=alphas.most_common(1)[0][0] if alphas else None,
        targets=[t for t in ("unet", "text_encoder") if any(p.target == t for p in lora.patches)],
        modules=len(lora.patches),
        base="SDXL" if lora.sdxl_hint else guess_base(lora.patches),
        dora=dora,
        algos=dict(algos),
    )


def _kind(patch: Patch) -> str:
    down = patch.tensors.get("down")
    if patch.algo == "lora" and ("mid" in patch.tensors or (down is not None and down.dim() == 4 and down.shape[-1] > 1)):
        return "locon"  # a convolution with a kernel wider than 1x1, or Tucker-decomposed
    return patch.algo


def guess_base(patches: list[Patch]) -> str:
    """SD1/SD2/SDXL from the text-feature width the cross-attention keys/values take (or the text encoder's)."""
    widths = Counter(_fan_in(p) for p in patches if p.target == "unet" and _CROSS_KV.search(p.module))
    if widths:
        return BASES.get(widths.most_common(1)[0][0], "unknown")
    text = Counter(_fan_in(p) for p in patches if p.target == "text_encoder" and re.search(r"q_proj$", p.module))
    return _TEXT_WIDTHS.get(text.most_common(1)[0][0], "unknown") if text else "unknown"


def _fan_in(patch: Patch) -> int:
    t = patch.tensors
    if patch.algo == "lora":
        return t["down"].shape[1]
    if patch.algo == "loha":
        return t["w1b"].shape[1]
    if patch.algo == "lokr":
        return (t["w1"] if "w1" in t else t["w1b"]).shape[1] * (t["w2"] if "w2" in t else t["w2b"]).shape[1]
    return t["diff"].shape[1]


def apply_loras(unet, text_encoder, specs: list[LoraSpec]) -> list[LoraInfo]:
    """Merge every LoRA into the weights, in order, each at its own scale; all are checked first."""
    plans = [_plan(unet, text_encoder, spec) for spec in specs]
    for spec, (lora, matches) in zip(specs, plans):
        _merge(matches, spec.scale, spec.unet_scale)
    return [_info(lora) for lora, _ in plans]


def apply_lora(unet, text_encoder, spec: LoraSpec) -> int:
    lora, matches = _plan(unet, text_encoder, spec)
    _merge(matches, spec.scale, spec.unet_scale)
    return len(matches)


def _plan(unet, text_encoder, spec: LoraSpec) -> tuple[LoraFile, list[tuple[Patch, object]]]:
    """Read the file and pair every patch with its module; raise (one line) unless all fit."""
    lora = read_lora_file(spec.path)
    where = f"--lora {spec.path}"
    model_width = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    if lora.sdxl_hint:
        raise ModelError(f"{where}: an SDXL LoRA ({lora.sdxl_hint}); this is an SD1-family model — use it with an SDXL model")
    base = guess_base(lora.patches)
    file_width = {v: k for k, v in BASES.items()}.get(base)
    if file_width is not None and model_width is not None and file_width != model_width:
        raise ModelError(f"{where}: a LoRA for {base} models (its cross-attention takes {file_width}-dim text features, "
                         f"this model's takes {model_width}); use it with an {base} model")
    lookup = {"unet": _module_index(unet, text=False), "text_encoder": _module_index(text_encoder, text=True)}
    matches, missing = [], []
    for patch in lora.patches:
        module = lookup[patch.target].get(patch.module)
        if module is None:
            missing.append(f"{patch.target}:{patch.module.removeprefix('_:')}")
            continue
        _check(where, patch, module.weight)
        matches.append((patch, module))
    if missing and any(re.search(r"(input|output)_blocks|middle_block", m) for m in missing):
        raise ModelError(f"{where}: {len(missing)} of its UNet modules (LDM names, e.g. {missing[0]}) are not in this "
                         "model's layout; it was trained for another architecture — use the model it was made for")
    if missing:
        raise ModelError(f"{where}: {len(missing)} of its {len(lora.patches)} modules are not in this model (e.g. {missing[0]}); "
                         "it was trained for another architecture — use the model it was made for")
    return lora, matches


def _check(where: str, patch: Patch, weight) -> None:
    """The update (and a DoRA magnitude) must fit the weight; a shape mismatch means another model."""
    try:
        delta_weight(patch.algo, patch.tensors, patch.alpha, weight.shape)
        if "dora" in patch.tensors:
            _check_magnitude(patch.tensors["dora"], weight.shape)
    except (ValueError, RuntimeError, KeyError, IndexError) as exc:
        name = patch.module.removeprefix("_:")
        raise ModelError(f"{where}: its {patch.algo} update for {patch.target}:{name} does not fit the model's weight "
                         f"{tuple(weight.shape)} ({' '.join(str(exc).split())[:120]}); this LoRA was trained for another model") from None


def _check_magnitude(magnitude, shape) -> None:
    if magnitude.numel() not in (shape[0], shape[1]):
        raise ValueError(f"dora_scale has {magnitude.numel()} values, the weight has {shape[0]} rows and {shape[1]} columns")


def _merge(matches: list[tuple[Patch, object]], te_scale: float, unet_scale: float | None = None) -> None:
    import torch

    for patch, module in matches:
        scale = unet_scale if patch.target == "unet" and unet_scale is not None else te_scale
        weight = module.weight
        with torch.no_grad():
            delta = delta_weight(patch.algo, patch.tensors, patch.alpha, weight.shape).to(weight.device)
            if "dora" in patch.tensors:  # blend towards the decomposed weight: scale 1 is exactly LyCORIS/peft
                delta = decompose(weight, delta, patch.tensors["dora"].to(weight.device)) - weight.float()
            weight.add_((scale * delta).to(weight.dtype))
            bias = patch.tensors.get("diff_b")
            if bias is not None and getattr(module, "bias", None) is not None:
                module.bias.add_((scale * bias.float()).to(module.bias.device, module.bias.dtype))


def _module_index(model, text: bool) -> dict:
    """Every spelling a file may use -> module: dotted ('a.b.0.c') and kohya ('_:a_b_0_c'); for the UNet
    the diffusers and the original LDM names, for the text encoder both the canonical `text_model.…`
    names and what the installed transformers calls them."""
    from ldm_cli.models.text_encoder_names import module_names

    index = {}
    if model is None:
        return index
    modules = dict(model.named_modules())
    names = module_names(model) if text else {name: name for name in modules if name}
    if not text and isinstance(getattr(getattr(model, "config", None), "layers_per_block", None), int):
        from ldm_cli.models.ldm_unet_names import aliases

        names |= aliases(model)  # input_blocks_4_1_… as A1111/ComfyUI accept beside down_blocks_1_…
    for canonical, memory in names.items():
        module = modules[memory]
        if getattr(module, "weight", None) is None:
            continue
        for name in {canonical, memory, canonical.removeprefix("text_model.")}:  # old ldm files lack text_model.
            index[name] = module
            index["_:" + name.replace(".", "_")] = module
    return index
