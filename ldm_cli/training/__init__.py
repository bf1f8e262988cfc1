"""Training: the diffusion objective, data, loops and checkpoints."""
