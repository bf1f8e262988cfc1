"""The denoising loop: schedulers, schedule types, guidance, noise, feature caching, previews."""
