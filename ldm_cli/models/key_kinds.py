"""What a weight file is, told from its tensor names and shapes alone (no weights are loaded).

Checkpoints (original LDM names, as A1111/civitai ship them):
  UNet          model.diffusion_model.*; input_blocks.0.0.weight [320, C_in, 3, 3]: C_in 9 = inpainting,
                8 = instruct-pix2pix, 4 = text-to-image; the cross-attention width (attn2.to_k [320, W])
                is 768 for SD1.x, 1024 for SD2.x, 2048 for SDXL (which also has label_emb / conditioner.*)
  text encoder  cond_stage_model.transformer.* (SD1, CLIP ViT-L), cond_stage_model.model.* (SD2, OpenCLIP),
                conditioner.embedders.* (SDXL)
  VAE           first_stage_model.*
LoRA families (kohya / diffusers / peft / LyCORIS):
  lora_down/lora_up (+alpha), lora_A/lora_B, lora.down/lora.up, lora_linear_layer.down/up,
  …processor.to_q_lora.down (old diffusers), lora_mid (LoCon Tucker), hada_w1_a… (LoHa),
  lokr_w1… (LoKr), dora_scale (DoRA)
Embeddings: emb_params / string_to_param.* [n, D], {token: [n, D]}, clip_g + clip_l (SDXL).
"""

from __future__ import annotations

import re

CONTEXT_FAMILY = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
WIDTH_FAMILY = {768: "SD1.x", 1024: "SD2.x", 1280: "SDXL"}
_ATTN2_K = re.compile(r"attn2[._]to_k")


def context_family(width) -> str:
    """768 SD1.x, 1024 SD2.x, 2048 SDXL; any other width is a small SD1-architecture model (tests, demos)."""
    if width in CONTEXT_FAMILY:
        return CONTEXT_FAMILY[width]
    return f"SD1-family ({width}-wide text)" if width else "unknown"


def checkpoint_facts(shapes: dict[str, list[int]]) -> dict:
    """Family, inpainting and which parts a single-file checkpoint holds."""
    first = shapes.get("model.diffusion_model.input_blocks.0.0.weight") or []
    in_channels = first[1] if len(first) > 1 else None
    context = next((s[1] for k, s in shapes.items() if k.startswith("model.diffusion_model.") and k.endswith("attn2.to_k.weight")), None)
    sdxl = any(k.startswith(("conditioner.", "model.diffusion_model.label_emb")) for k in shapes)
    family = "SDXL" if sdxl else context_family(context)
    text = ("CLIP ViT-L (cond_stage_model.transformer)" if any(k.startswith("cond_stage_model.transformer.") for k in shapes)
            else "OpenCLIP (cond_stage_model.model)" if any(k.startswith("cond_stage_model.model.") for k in shapes)
            else "two (conditioner.embedders)" if sdxl else None)
    return {
        "family": family,
        "unet_in_channels": in_channels,
        "variant": {9: "inpainting", 8: "instruct-pix2pix"}.get(in_channels, "text-to-image"),
        "text_encoder": text,
        "has_vae": any(k.startswith("first_stage_model.") for k in shapes),
        "has_ema": any(k.startswith("model_ema.") for k in shapes),
    }


def is_vae(keys) -> bool:
    """A lone VAE: LDM names (encoder.down.0…, as .vae.safetensors), diffusers names, or first_stage_model.*."""
    keys = list(keys)
    plain = {k.removeprefix("first_stage_model.") for k in keys}
    return ("encoder.conv_in.weight" in plain and "decoder.conv_out.weight" in plain
            and not any(k.startswith("model.diffusion_model.") for k in keys))


LORA_MARKERS = [  # (key fragment, kind), checked in order
    ("hada_w1_a", "LoHa"), ("lokr_w1", "LoKr"), ("lora_mid", "LoCon (Tucker, lora_mid)"),
    ("lora_down", "LoRA (kohya)"), ("lora_A", "LoRA (peft/diffusers)"), ("lora_linear_layer", "LoRA (diffusers, lora_linear_layer)"),
    ("lora.down", "LoRA (diffusers, lora.down/up)"), ("_lora.down", "LoRA (old diffusers attention processors)"),
]


def lora_facts(shapes: dict[str, list[int]], alphas: dict[str, float], metadata: dict) -> dict | None:
    """Kind, rank(s), alpha(s), targets and base family of a LoRA-type file; None when it is not one."""
    keys = list(shapes)
    kinds = [kind for marker, kind in LORA_MARKERS if any(marker in k for k in keys)]
    if not kinds:
        return None
    if any("processor." in k and "_lora." in k for k in keys):
        kinds = ["LoRA (old diffusers attention processors)"]
    if any(".lora_down." in k and len(shapes[k]) == 4 and shapes[k][2:] != [1, 1] for k in keys) and kinds[0] == "LoRA (kohya)":
        kinds[0] = "LoCon (kohya, conv layers)"
    downs = {k: s for k, s in shapes.items() if re.search(r"(lora_down|lora_A|lora\.down|lora_linear_layer\.down|_lora\.down)\.weight$", k)}
    ranks = sorted({s[0] for s in downs.values()}) or sorted({s[0] for k, s in shapes.items() if k.endswith(("hada_w1_a", "lokr_w1_a"))})
    modules = {re.sub(r"\.(lora_down|lora_up|lora_A|lora_B|lora\.down|lora\.up|lora_linear_layer\.(down|up)|alpha|lora_mid|"
                      r"hada_\w+|lokr_\w+|dora_scale)(\.weight)?$", "", k) for k in keys}
    te = [m for m in modules if m.startswith(("lora_te", "text_encoder", "te_", "lora_te1", "lora_te2"))]
    unet = [m for m in modules if m not in te]
    widths = {s[1] for k, s in downs.items() if _ATTN2_K.search(k) and len(s) == 2}
    family = ("SDXL" if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2")) for k in keys) or 2048 in widths
              else (context_family(next(iter(widths))) if widths else _family_from_metadata(metadata) or "unknown"))
    alpha_values = sorted(set(alphas.values()))
    if not alpha_values and metadata.get("ss_network_alpha"):
        alpha_values = [metadata["ss_network_alpha"]]
    return {
        "kind": kinds[0] + (" + DoRA (dora_scale)" if any("dora_scale" in k for k in keys) else ""),
        "family": family, "rank": ranks, "alpha": alpha_values,
        "unet_modules": len(unet), "text_encoder_modules": len(te),
        "targets": sorted({_layer(m) for m in modules}),
    }


_LAYERS = re.compile(r"(to_q|to_k|to_v|to_out[._]0|proj_in|proj_out|ff[._]net[._]0[._]proj|ff[._]net[._]2|q_proj|k_proj|"
                     r"v_proj|out_proj|fc1|fc2|conv_shortcut|time_emb_proj|conv1|conv2|conv_in|conv_out|conv|"
                     r"downsamplers[._]0[._]conv|upsamplers[._]0[._]conv)$")
_DOTTED = {"to_out_0": "to_out.0", "ff_net_0_proj": "ff.net.0.proj", "ff_net_2": "ff.net.2",
           "downsamplers_0_conv": "downsamplers.0.conv", "upsamplers_0_conv": "upsamplers.0.conv"}


def _layer(module: str) -> str:
    """The layer a LoRA module adapts, e.g. 'to_k', 'ff.net.0.proj', 'q_proj' (kohya and dotted names)."""
    match = _LAYERS.search(module)
    if not match:
        return module.rsplit(".", 1)[-1].rsplit("_", 1)[-1]
    flat = match.group(1).replace(".", "_")
    return _DOTTED.get(flat, flat)


def _family_from_metadata(metadata: dict) -> str | None:
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl"):
        return "SDXL"
    if metadata.get("ss_v2") == "True":
        return "SD2.x"
    return "SD1.x" if metadata.get("ss_network_module") or metadata.get("ss_network_dim") else None


def embedding_facts(shapes: dict[str, list[int]]) -> dict | None:
    """Vectors, width and family of a textual-inversion file; None when it is not one."""
    if "clip_g" in shapes and "clip_l" in shapes:
        return {"vectors": shapes["clip_g"][0], "width": "1280 + 768", "family": "SDXL", "token": None}
    names = [k for k in shapes if k == "emb_params" or k.startswith("string_to_param")]
    if not names and len(shapes) == 1:
        names = list(shapes)
    if len(names) != 1:
        return None
    shape = shapes[names[0]]
    if not 1 <= len(shape) <= 2 or shape[-1] < 8 or (len(shape) == 2 and shape[0] > 128):
        return None
    if names[0] not in ("emb_params",) and not names[0].startswith("string_to_param") and shape[-1] not in WIDTH_FAMILY:
        return None  # a lone tensor of another width is too weak a sign
    vectors = shape[0] if len(shape) == 2 else 1
    token = names[0] if names[0] not in ("emb_params",) and not names[0].startswith("string_to_param") else None
    family = WIDTH_FAMILY.get(shape[-1], f"for a {shape[-1]}-wide text encoder")
    return {"vectors": vectors, "width": shape[-1], "family": family, "token": token}


def component_kind(keys) -> str | None:
    """A diffusers/transformers component's own weight file (not a whole model)."""
    keys = set(keys)
    if "conv_in.weight" in keys and any(k.startswith("down_blocks.") for k in keys) and any("attn2" in k for k in keys):
        return "a diffusers UNet weight file"
    if any(k.startswith(("text_model.", "encoder.layers.")) for k in keys) and any("embeddings.token_embedding" in k for k in keys):
        return "a CLIP text-encoder weight file"
    return None
