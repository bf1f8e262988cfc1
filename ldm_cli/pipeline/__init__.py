"""The math of sampling and its orchestration.

    prompts/   A1111 prompt weights and tags, chunking, the text encoder's conditioning
    loop/      the denoising loop: schedulers, schedule types, guidance, noise, DeepCache, previews
    starts/    where sampling starts: noise, init image (img2img), masked init (inpaint, outpaint), hires
    codec/     images <-> latents: the VAE, latent files, batches of files, quality figures
    records/   what a picture records and replays: provenance, recipe fields, LoRA/embedding networks
    config, generation, txt2img, batch, grid, dry_run: one run of `ldm generate`, built from those
"""
