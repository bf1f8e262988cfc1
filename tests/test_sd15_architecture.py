"""The exact SD1.5 architecture from the shipped configs (random weights): a 512x512 request means
77x768 text embeddings and 4x64x64 latents. The 860M-parameter UNet runs on the meta device
(shapes only, no memory); the text encoder and VAE run for real."""

from __future__ import annotations

import json

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ldm_cli.pipeline.generation import SamplingPlan
from ldm_cli.models.loading import SD15_CONFIG_DIR, Components, ModelSource, read_scheduler_config
from ldm_cli.pipeline.loop.schedulers import name_for_class
from ldm_cli.pipeline.prompts.text import encode_prompts


def _config(component: str) -> dict:
    return json.loads((SD15_CONFIG_DIR / component / "config.json").read_text())


def test_sd15_shapes_for_a_512_request():
    tokenizer = CLIPTokenizer.from_pretrained(SD15_CONFIG_DIR / "tokenizer")
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    text_encoder = CLIPTextModel(CLIPTextConfig(**_config("text_encoder"))).eval()
    embeddings = encode_prompts(tokenizer, text_encoder, ["a scarlet macaw"])
    assert embeddings.shape == (1, 77, 768)

    vae = AutoencoderKL.from_config(_config("vae")).eval()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(_config("unet"))
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 859.5

    components = Components(ModelSource("sd15", "folder", SD15_CONFIG_DIR), tokenizer, text_encoder, vae, unet,
                            read_scheduler_config(SD15_CONFIG_DIR))
    assert components.native_size == 512 and components.vae_scale_factor == 8
    plan = SamplingPlan(512, 512, 50, 7.5, name_for_class(components.scheduler_config["_class_name"]))
    assert plan.scheduler == "pndm"
    shape = plan.latent_shape(components)
    assert shape == (1, 4, 64, 64)

    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 512, 512)).latent_dist.mean
    assert latents.shape == shape  # 3x512x512 pixels -> 4x64x64 latents, 48x fewer numbers
    assert vae.config.scaling_factor == 0.18215

    batch = torch.cat([embeddings, embeddings]).to("meta")  # [uncond, cond]
    eps = unet(torch.zeros(2, *shape[1:], device="meta"), torch.tensor(999), encoder_hidden_states=batch).sample
    assert eps.shape == (2, 4, 64, 64)
