"""Images <-> latents: the VAE, latent files, batches of files, quality figures."""
