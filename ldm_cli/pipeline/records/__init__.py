"""What a picture records and replays: provenance, recipe fields, LoRA/embedding networks."""
