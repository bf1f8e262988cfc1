"""Model layouts people have, what ldm does with each, and what diffusers does with the same files.

Checked by tests/compat/test_model_layouts.py (each row is built with random weights and real key
names); rendered into README.md by tests/compat/table.py. "loads, same pixels as diffusers": ldm's
image equals diffusers' pipeline on the same files within 1/255 (a row where diffusers itself refuses
compares with diffusers on the equivalent current-format file).
"""

SAME = "loads, same pixels as diffusers"

CASES = [
    {"name": "diffusers folder", "file": "`model_index.json` + `tokenizer/` `text_encoder/` `vae/` `unet/` `scheduler/` (safetensors)",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "tokenizer.json-only tokenizer", "file": "`tokenizer/` with `tokenizer.json` + `tokenizer_config.json` "
     "(transformers 5 `save_pretrained`), no `vocab.json/merges.txt`", "ldm": SAME, "diffusers": "loads"},
    {"name": "fp16 variant only", "file": "only `*.fp16.safetensors` in each component (diffusers: `variant=\"fp16\"`)",
     "ldm": SAME + " (with or without `--variant fp16`)", "diffusers": "loads"},
    {"name": "fp16 + fp32", "file": "default `*.safetensors` and `*.fp16.safetensors` side by side",
     "ldm": SAME + " (reads the default files only)", "diffusers": "loads"},
    {"name": "fp16 + fp32, --variant fp16", "file": "the same folder with `--variant fp16` (diffusers: `variant=\"fp16\"`)",
     "ldm": SAME + " (reads the fp16 files only)", "diffusers": "loads"},
    {"name": "sharded UNet", "file": "`unet/diffusion_pytorch_model.safetensors.index.json` + shards",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "official repo clone", "file": "stable-diffusion-v1-5 clone: `non_ema`, fp16 and `.bin` copies beside the "
     "safetensors, `v1-5-pruned*.safetensors` at the root, `safety_checker/`, `feature_extractor/`",
     "ldm": SAME + "; reads and hashes only the default safetensors", "diffusers": "loads"},
    {"name": "pickle-only UNet", "file": "`unet/diffusion_pytorch_model.bin`, no safetensors",
     "ldm": "refused: pickle can run code, pass `--allow-pickle`", "diffusers": "loads"},
    {"name": "pickle-only UNet, --allow-pickle", "file": "the same folder with `--allow-pickle`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "LCM folder", "file": "UNet with `time_cond_proj_dim`, LCMScheduler (LatentConsistencyModelPipeline)",
     "ldm": SAME + " (sampler lcm, guidance embedding, no CFG pass)", "diffusers": "loads"},
    {"name": "SD2-like folder", "file": "1024-wide text encoder and UNet cross-attention",
     "ldm": "refused: a Stable Diffusion 2.x model, ldm runs SD1.x", "diffusers": "loads"},
    {"name": "single file SD1", "file": "A1111 `.safetensors`: `model.diffusion_model.*`, `first_stage_model.*`, "
     "`cond_stage_model.transformer.text_model.*`", "ldm": SAME, "diffusers": "loads"},
    {"name": "single file .ckpt", "file": "pickle checkpoint (`{\"state_dict\": ...}`)",
     "ldm": "refused: pickle can run code, pass `--allow-pickle`", "diffusers": "loads"},
    {"name": "single file .ckpt, --allow-pickle", "file": "the same file with `--allow-pickle`",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "single file, old CLIP names", "file": "`cond_stage_model.transformer.encoder.*` (no `text_model.`), "
     "remapped as A1111 does", "ldm": SAME, "diffusers": "refuses"},
    {"name": "single file without VAE", "file": "no `first_stage_model.*` keys",
     "ldm": "refused: the file has no VAE, pass `--vae`", "diffusers": "refuses"},
    {"name": "single file without VAE, --vae", "file": "the same file with `--vae FOLDER` (diffusers: `vae=...`)",
     "ldm": SAME, "diffusers": "loads"},
    {"name": "single file with model_ema", "file": "`model_ema.*` beside `model.diffusion_model.*`",
     "ldm": SAME + " (normal weights)", "diffusers": "loads"},
    {"name": "single file with model_ema, --ema", "file": "the same file with `--ema` (diffusers: `extract_ema=True`)",
     "ldm": SAME + " (EMA weights)", "diffusers": "loads"},
    {"name": "SD2-like single file", "file": "`cond_stage_model.model.*` (OpenCLIP), 1024-wide cross-attention",
     "ldm": "refused: a Stable Diffusion 2.x checkpoint, ldm runs SD1.x", "diffusers": "n/a"},
    {"name": "SDXL single file", "file": "`conditioner.embedders.0/1.*` (two text encoders)",
     "ldm": "refused: an SDXL checkpoint, ldm runs SD1.x", "diffusers": "n/a"},
    {"name": "VAE file as --model", "file": "A1111 `.vae.safetensors` (`encoder.*`, `decoder.*`, `quant_conv`)",
     "ldm": "refused: this is a VAE, pass it as `--vae`", "diffusers": "n/a"},
    {"name": "VAE file as --vae", "file": "A1111 `.vae.safetensors` with a diffusers folder `--model`",
     "ldm": SAME + " with that VAE swapped in", "diffusers": "loads"},
    {"name": "VAE folder as --vae", "file": "diffusers VAE folder (`config.json` + `diffusion_pytorch_model.safetensors`)",
     "ldm": SAME + " with that VAE swapped in", "diffusers": "loads"},
    {"name": "LoRA file as --model", "file": "kohya LoRA (`lora_unet_*.lora_down/lora_up`)",
     "ldm": "refused: this is a LoRA, pass it with `--lora`", "diffusers": "n/a"},
]
