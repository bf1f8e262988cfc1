"""Models: resolving --model, loading components, LoRA, devices and fast paths."""
