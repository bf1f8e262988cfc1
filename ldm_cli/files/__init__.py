"""Files on disk: reading images, writing PNGs and latent files, A1111/JSON metadata, hashes."""
