"""The math of sampling and its orchestration: prompts, guidance, schedulers, txt2img/img2img, the VAE."""
