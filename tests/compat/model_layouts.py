"""Builders for the model layouts of tests/compat/cases_models.py: tiny random weights, real names.

Each builder writes one layout under ctx.work and returns what is passed as --model. `other` is a
second tiny model with different weights: the copies a loader must NOT read (non_ema, fp16 beside
fp32, .bin beside .safetensors, model_ema) hold its weights, so reading the wrong file shows.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ldm_checkpoint import config_folder, export_single_file, unet_state_dict, vae_state_dict

WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}


@dataclass
class Ctx:
    base: Path  # the tiny model every layout is made of
    other: Path  # different weights, for the files that must be ignored (or for --vae)
    work: Path
    cfg: Path  # base's component configs without weights (--config of single files)
    single: Path  # base as an A1111 single file
    cache: dict = field(default_factory=dict)

    def get(self, builder) -> Path:
        """Build a layout once per context (several rows and tests share one)."""
        if builder.__name__ not in self.cache:
            self.cache[builder.__name__] = builder(self)
        return self.cache[builder.__name__]

    def folder(self, name: str) -> Path:
        target = self.work / name
        if not target.exists():
            shutil.copytree(self.base, target)
        return target


def _weights(folder: Path, component: str) -> dict:
    return load_file(folder / component / f"{WEIGHTS[component]}.safetensors")


def _save(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


# --- diffusers folders -------------------------------------------------------------------------


def diffusers_folder(ctx: Ctx) -> Path:
    return ctx.folder("diffusers")


def tokenizer_json_only(ctx: Ctx) -> Path:
    """What transformers 5 `save_pretrained` writes: tokenizer.json + tokenizer_config.json, no vocab.json."""
    from transformers import CLIPTokenizer

    folder = ctx.folder("tokenizer-json")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    shutil.rmtree(folder / "tokenizer")
    tokenizer.save_pretrained(folder / "tokenizer")
    assert not (folder / "tokenizer" / "vocab.json").exists()
    return folder


def fp16_only(ctx: Ctx) -> Path:
    """Only *.fp16.safetensors (a `variant="fp16"` download)."""
    folder = ctx.folder("fp16-only")
    for component, stem in WEIGHTS.items():
        plain = folder / component / f"{stem}.safetensors"
        _save({k: v.half() for k, v in load_file(plain).items()}, folder / component / f"{stem}.fp16.safetensors")
        plain.unlink()
    return folder


def fp16_and_fp32(ctx: Ctx) -> Path:
    """Default weights plus an fp16 variant holding other weights: each must be read only when asked."""
    folder = ctx.folder("fp16-and-fp32")
    for component, stem in WEIGHTS.items():
        other = {k: v.half() for k, v in _weights(ctx.other, component).items()}
        _save(other, folder / component / f"{stem}.fp16.safetensors")
    return folder


def sharded_unet(ctx: Ctx) -> Path:
    from diffusers import UNet2DConditionModel

    folder = ctx.folder("sharded")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(folder / "unet", max_shard_size="300KB")
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    return folder


def official_clone(ctx: Ctx) -> Path:
    """A full `git clone` of stable-diffusion-v1-5: every copy of the weights, and the extra folders."""
    folder = ctx.folder("official")
    for component, stem in WEIGHTS.items():
        other = _weights(ctx.other, component)
        _save({k: v.half() for k, v in other.items()}, folder / component / f"{stem}.fp16.safetensors")
        torch.save(other, folder / component / ("pytorch_model.bin" if component == "text_encoder" else f"{stem}.bin"))
    _save(_weights(ctx.other, "unet"), folder / "unet" / "diffusion_pytorch_model.non_ema.safetensors")
    torch.save(_weights(ctx.other, "unet"), folder / "unet" / "diffusion_pytorch_model.non_ema.bin")
    export_single_file(ctx.other, folder / "v1-5-pruned-emaonly.safetensors")
    shutil.copy(folder / "v1-5-pruned-emaonly.safetensors", folder / "v1-5-pruned.safetensors")
    _save({"vision_model.embeddings.class_embedding": torch.randn(8)}, folder / "safety_checker" / "model.safetensors")
    (folder / "safety_checker" / "config.json").write_text(json.dumps({"_class_name": "StableDiffusionSafetyChecker"}))
    (folder / "feature_extractor").mkdir()
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({"crop_size": 224}))
    index = json.loads((folder / "model_index.json").read_text())
    index.update(safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
                 feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def pickle_only(ctx: Ctx) -> Path:
    from diffusers import UNet2DConditionModel

    folder = ctx.folder("pickle-only")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    return folder


def lcm_folder(ctx: Ctx) -> Path:
    """An LCM-distilled model: UNet with time_cond_proj_dim, LCMScheduler, LCM pipeline class."""
    from diffusers import LCMScheduler, UNet2DConditionModel

    folder = ctx.folder("lcm")
    config = json.loads((folder / "unet" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")} | {"time_cond_proj_dim": 16}
    torch.manual_seed(7)
    UNet2DConditionModel.from_config(config).save_pretrained(folder / "unet")
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    LCMScheduler.from_config(scheduler_config).save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index.update(_class_name="LatentConsistencyModelPipeline", scheduler=["diffusers", "LCMScheduler"])
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def sd2_folder(ctx: Ctx) -> Path:
    """SD2-like: a 1024-wide text encoder (OpenCLIP-H's width) and UNet cross-attention of 1024."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = ctx.folder("sd2")
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    text.update(hidden_size=1024, intermediate_size=64, num_hidden_layers=1, num_attention_heads=16,
                projection_dim=1024, hidden_act="gelu")
    torch.manual_seed(2)
    shutil.rmtree(folder / "text_encoder")
    CLIPTextModel(CLIPTextConfig(**{k: v for k, v in text.items() if not k.startswith("_")})).save_pretrained(
        folder / "text_encoder")
    unet = json.loads((folder / "unet" / "config.json").read_text())
    unet = {k: v for k, v in unet.items() if not k.startswith("_")} | {"cross_attention_dim": 1024, "use_linear_projection": True}
    UNet2DConditionModel.from_config(unet).save_pretrained(folder / "unet")
    return folder


# --- single files --------------------------------------------------------------------------------


def single_file(ctx: Ctx) -> Path:
    return ctx.single


def single_ckpt(ctx: Ctx) -> Path:
    """A CompVis/A1111 pickle checkpoint: {"state_dict": ...} as PyTorch Lightning saved it."""
    path = ctx.work / "tiny-sd1.ckpt"
    torch.save({"state_dict": load_file(ctx.single), "global_step": 470000}, path)
    return path


def single_old_clip_names(ctx: Ctx) -> Path:
    """CLIP keys as transformers < 4.20 named them: cond_stage_model.transformer.encoder.* (no text_model.)."""
    state = load_file(ctx.single)
    prefix = "cond_stage_model.transformer.text_model."
    renamed = {("cond_stage_model.transformer." + k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    return _save(renamed, ctx.work / "old-clip-names.safetensors")


def single_without_vae(ctx: Ctx) -> Path:
    state = {k: v for k, v in load_file(ctx.single).items() if not k.startswith("first_stage_model.")}
    return _save(state, ctx.work / "no-vae.safetensors")


def single_with_ema(ctx: Ctx) -> Path:
    """Normal UNet weights plus an EMA copy (the other model's) under LDM's dotless model_ema.* names."""
    state = load_file(ctx.single)
    unet_config = json.loads((ctx.other / "unet" / "config.json").read_text())
    for key, value in unet_state_dict(_weights(ctx.other, "unet"), unet_config).items():
        state["model_ema." + "".join(key.split(".")[1:])] = value
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    return _save(state, ctx.work / "with-ema.safetensors")


def sd2_single_file(ctx: Ctx) -> Path:
    """SD2 layout: OpenCLIP text keys (cond_stage_model.model.*) and 1024-wide cross-attention."""
    folder = ctx.get(sd2_folder)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    state = unet_state_dict(_weights(folder, "unet"), unet_config)
    state.update(vae_state_dict(_weights(folder, "vae"), json.loads((folder / "vae" / "config.json").read_text())))
    state.update({"cond_stage_model.model.token_embedding.weight": torch.randn(16, 1024),
                  "cond_stage_model.model.positional_embedding": torch.randn(77, 1024),
                  "cond_stage_model.model.ln_final.weight": torch.ones(1024)})
    return _save(state, ctx.work / "sd2-like.safetensors")


def sdxl_single_file(ctx: Ctx) -> Path:
    state = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(32, 4, 3, 3),
        "model.diffusion_model.label_emb.0.0.weight": torch.randn(32, 16),
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": torch.randn(77, 32),
        "conditioner.embedders.1.model.ln_final.weight": torch.ones(64),
        "first_stage_model.encoder.conv_in.weight": torch.randn(16, 3, 3, 3),
    }
    return _save(state, ctx.work / "sdxl-like.safetensors")


def vae_single_file(ctx: Ctx) -> Path:
    """An A1111 `.vae.safetensors`: LDM VAE names without a prefix (the other model's VAE)."""
    vae_config = json.loads((ctx.other / "vae" / "config.json").read_text())
    state = {k.removeprefix("first_stage_model."): v for k, v in vae_state_dict(_weights(ctx.other, "vae"), vae_config).items()}
    return _save(state, ctx.work / "other.vae.safetensors")


def other_vae_folder(ctx: Ctx) -> Path:
    target = ctx.work / "other-vae"
    if not target.exists():
        shutil.copytree(ctx.other / "vae", target)
    return target


def lora_file(ctx: Ctx) -> Path:
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    state = {f"{name}.lora_down.weight": torch.randn(4, 32), f"{name}.lora_up.weight": torch.zeros(32, 4),
             f"{name}.alpha": torch.tensor(4.0)}
    return _save(state, ctx.work / "style.lora.safetensors")


def make_context(work: Path) -> Ctx:
    from ldm_cli.tiny import build_tiny_model

    base = build_tiny_model(work / "base", seed=0)
    other = build_tiny_model(work / "other", seed=1)
    return Ctx(base=base, other=other, work=work, cfg=config_folder(base, work / "cfg"),
               single=export_single_file(base, work / "tiny-sd1.safetensors"))


