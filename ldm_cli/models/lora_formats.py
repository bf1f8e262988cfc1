"""Read a LoRA-family .safetensors file into one internal form: a list of Patch (one per adapted module).

Key styles read (all of them as real tools write them):
  kohya / A1111 / LyCORIS:  lora_unet_<module with _>.<param>, lora_te_<module with _>.<param>
                            (text encoder with or without text_model_; lora_te1_/lora_te2_ are SDXL)
  diffusers / peft:         unet.<module>.lora_A.weight / lora_B.weight, ….lora.down/up.weight,
                            text_encoder.<module>.lora_linear_layer.down/up.weight,
                            old attention processors ….attn1.processor.to_q_lora.down.weight,
                            peft DoRA ….lora_magnitude_vector, peft LoHa/LoKr ….hada_w1_a / ….lokr_w1
  header:                   diffusers' lora_adapter_metadata (peft LoraConfig: r, lora_alpha, patterns)
Params: lora_down/lora_up/lora_mid (LoRA, LoCon, Tucker), hada_* (LoHa), lokr_* (LoKr), diff (full),
alpha, dora_scale (DoRA). The module names stay as the file spells them; models/lora.py matches them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import ModelError

# file param name -> internal slot
_PARAMS = {
    "lora_down.weight": "down", "lora_up.weight": "up", "lora_mid.weight": "mid",
    "lora_A.weight": "down", "lora_B.weight": "up", "lora.down.weight": "down", "lora.up.weight": "up",
    "lora_linear_layer.down.weight": "down", "lora_linear_layer.up.weight": "up",
    "hada_w1_a": "w1a", "hada_w1_b": "w1b", "hada_w2_a": "w2a", "hada_w2_b": "w2b", "hada_t1": "t1", "hada_t2": "t2",
    "lokr_w1": "w1", "lokr_w1_a": "w1a", "lokr_w1_b": "w1b", "lokr_w2": "w2", "lokr_w2_a": "w2a", "lokr_w2_b": "w2b",
    "lokr_t2": "t2", "diff": "diff", "diff_b": "diff_b",
    "alpha": "alpha", "dora_scale": "dora", "lora_magnitude_vector": "dora", "lora_magnitude_vector.weight": "dora",
}
_PARAM_RE = "|".join(re.escape(p) for p in sorted(_PARAMS, key=len, reverse=True))
_KOHYA = re.compile(rf"^lora_(unet|te|te1|te2)_(.+?)\.({_PARAM_RE})$")
_DIFFUSERS = re.compile(rf"^(?:(unet|text_encoder|text_encoder_2)\.)?(.+?)\.({_PARAM_RE})$")
# Old diffusers attention processors: ….attn1.processor.to_q_lora.down.weight (to_out_lora -> to_out.0)
_PROCESSOR = re.compile(r"^(.*?)\.(?:processor\.)?(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_UNET_ROOTS = ("down_blocks", "mid_block", "up_blocks", "conv_in", "conv_out", "time_embedding")
# LyCORIS algorithms we recognise but do not apply: their params, for a clear refusal
_OTHER_ALGOS = {"oft_blocks": "OFT", "oft_diag": "OFT", "boft_blocks": "BOFT", "a1.weight": "GLoRA",
                "b1.weight": "GLoRA", "on_input": "IA3", "weight": "IA3"}


@dataclass
class Patch:
    target: str  # "unet" | "text_encoder"
    module: str  # as the file names it: dotted (diffusers) or "_:under_scored" (kohya)
    algo: str = "lora"  # "lora" (incl. LoCon and Tucker lora_mid) | "loha" | "lokr" | "full"
    tensors: dict = field(default_factory=dict)  # by internal slot: down, up, mid, w1a, …, dora
    alpha: float | None = None


@dataclass
class LoraFile:
    path: Path
    format: str  # "kohya" | "diffusers" | "peft"
    patches: list[Patch]
    sdxl_hint: str = ""  # why the keys alone say SDXL ("" when they do not)


def read_lora_file(path: Path, flag: str = "--lora") -> LoraFile:
    """Parse every tensor of the file into Patches; unknown keys are refused, never dropped."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for bad headers
        raise ModelError(f"{flag} {path}: not a readable .safetensors file ({' '.join(str(exc).split())[:160]})") from None
    groups: dict[tuple[str, str], Patch] = {}
    unknown, styles, sdxl = [], set(), ""
    for key, value in tensors.items():
        parsed = _parse_key(key)
        if parsed is None:
            unknown.append(key)
            continue
        style, target, module, param = parsed
        styles.add(style)
        if target == "sdxl":
            sdxl = sdxl or f"it has keys for SDXL's second text encoder, {key.split('_')[1] if key.startswith('lora_') else 'text_encoder_2'}"
            continue
        patch = groups.setdefault((target, module), Patch(target, module))
        slot = _PARAMS[param]
        if slot == "alpha":
            patch.alpha = float(value)
        else:
            patch.tensors[slot] = value
        if param.startswith(("hada_", "lokr_", "diff")):
            patch.algo = {"h": "loha", "l": "lokr", "d": "full"}[param[0]]
    if unknown:
        raise ModelError(_unknown_message(path, flag, unknown))
    if not groups and not sdxl:
        raise ModelError(f"{flag} {path}: no LoRA weights in it (expected kohya 'lora_unet_…' or diffusers 'unet.…lora_A' keys)")
    fmt = "kohya" if styles == {"kohya"} else ("peft" if any(k.endswith(("lora_A.weight", "lora_B.weight")) for k in tensors) else "diffusers")
    patches = list(groups.values())
    incomplete = [(p, need) for p in patches for need in _missing_parts(p)]
    if incomplete:
        patch, need = incomplete[0]
        raise ModelError(f"{flag} {path}: {len({id(p) for p, _ in incomplete})} of its modules lack part of their weights "
                         f"(e.g. {patch.module.removeprefix('_:')} has no {need}); the file is incomplete — download it again")
    _apply_adapter_metadata(patches, header)
    return LoraFile(Path(path), fmt, patches, sdxl)


_NEEDS = {"lora": [("down",), ("up",)], "loha": [("w1a",), ("w1b",), ("w2a",), ("w2b",)],
          "lokr": [("w1", "w1a"), ("w1", "w1b"), ("w2", "w2a"), ("w2", "w2b")], "full": [("diff",)]}


def _missing_parts(patch: Patch) -> list[str]:
    """The tensors the patch's algorithm needs and the file lacks (either of a pair will do)."""
    return [" or ".join(_file_name(patch.algo, o) for o in options)
            for options in _NEEDS[patch.algo] if not any(o in patch.tensors for o in options)]


def _file_name(algo: str, slot: str) -> str:
    """The param name a kohya/LyCORIS file uses for an internal slot (w2a -> hada_w2_a, down -> lora_down)."""
    if algo in ("loha", "lokr"):
        return ("hada_" if algo == "loha" else "lokr_") + (slot[:2] + "_" + slot[2:] if len(slot) == 3 else slot)
    return {"down": "lora_down", "up": "lora_up"}.get(slot, slot)


def _parse_key(key: str):
    """(style, target, module, param) or None; target "sdxl" marks a second text encoder."""
    key = key.removeprefix("base_model.model.")  # a peft PeftModel's own adapter file
    if match := _KOHYA.match(key):
        prefix, module, param = match.groups()
        target = {"unet": "unet", "te": "text_encoder", "te1": "text_encoder", "te2": "sdxl"}[prefix]
        return "kohya", target, "_:" + module, param
    if match := _PROCESSOR.match(key):
        head, proj, direction = match.groups()
        prefix, _, rest = head.partition(".")
        target = prefix if prefix in ("unet", "text_encoder") else _target_of(head)
        module = rest if prefix in ("unet", "text_encoder") else head
        if target == "text_encoder":  # diffusers' old text-encoder spelling: to_q_lora -> q_proj
            module = f"{module}.{ {'to_q': 'q_proj', 'to_k': 'k_proj', 'to_v': 'v_proj', 'to_out': 'out_proj'}[proj]}"
        else:
            module = f"{module}.{'to_out.0' if proj == 'to_out' else proj}"
        return "diffusers", target, module, f"lora.{direction}.weight"
    if match := _DIFFUSERS.match(key):
        prefix, module, param = match.groups()
        if prefix == "text_encoder_2":
            return "diffusers", "sdxl", module, param
        target = prefix or _target_of(module)
        if target is None:
            return None
        return "diffusers", target, module, param
    return None


def _target_of(module: str) -> str | None:
    """For keys without a unet./text_encoder. prefix (old save_attn_procs files): guess from the root."""
    if module.startswith(_UNET_ROOTS):
        return "unet"
    if module.startswith(("text_model.", "encoder.layers.")):
        return "text_encoder"
    return None


def _unknown_message(path, flag, unknown: list[str]) -> str:
    first = unknown[0]
    if first.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")):
        return f"{flag} {path}: a full Stable Diffusion checkpoint, not a LoRA; pass it with --model"
    if any(k.startswith("bundle_emb.") for k in unknown):
        return (f"{flag} {path}: it bundles textual-inversion embeddings (bundle_emb.…) with the LoRA, which ldm does "
                "not read from LoRA files; save the embeddings separately (--embedding) and the LoRA without them")
    if first.startswith("lora_"):
        for name, algo in _OTHER_ALGOS.items():
            if first.endswith("." + name):
                return (f"{flag} {path}: a LyCORIS {algo} file, which ldm cannot apply (it applies LoRA, LoCon, LoHa, "
                        "LoKr, full and DoRA); merge it into the model with LyCORIS, or use a LoRA/LoHa/LoKr version")
    return (f"{flag} {path}: {len(unknown)} tensors are not LoRA/LyCORIS weights ldm knows (e.g. {first!r}); "
            "it may be another kind of adapter (ControlNet, IP-Adapter, embedding) — pass only LoRA files")


def _apply_adapter_metadata(patches: list[Patch], header: dict) -> None:
    """diffusers' `lora_adapter_metadata` holds each part's peft LoraConfig: its alpha/r is the strength.

    diffusers builds LoraConfig(**metadata), so the scale is lora_alpha / r (or / sqrt(r) with rsLoRA),
    per module through rank_pattern / alpha_pattern. Stored here as the alpha of a rank-r merge.
    """
    raw = header.get("lora_adapter_metadata")
    if not raw:
        return
    try:
        metadata = json.loads(raw)
    except ValueError:
        return
    for patch in patches:
        config = {k.split(".", 1)[1]: v for k, v in metadata.items() if k.startswith(patch.target + ".")}
        if not config or "down" not in patch.tensors or patch.module.startswith("_:"):
            continue
        r = _pattern(config.get("rank_pattern") or {}, patch.module, config.get("r", 8))  # peft's defaults: 8, 8
        alpha = _pattern(config.get("alpha_pattern") or {}, patch.module, config.get("lora_alpha", 8))
        scale = alpha / (r ** 0.5 if config.get("use_rslora") else r)
        patch.alpha = scale * patch.tensors["down"].shape[0]


def _pattern(patterns: dict, module: str, default):
    """peft's get_pattern_key: a pattern applies when the module name ends with it (after a dot)."""
    short = module.removeprefix("text_model.")
    for key, value in patterns.items():
        if any(re.match(rf"(.*\.)?({key})$", name) for name in (module, short)):
            return value
    return default
