"""`ldm generate --attention-maps`: record while an image is made, then write its maps beside it.

    <name>-attention.png           the image, then one panel per word (its map over the image)
    <name>-attention.safetensors   token_maps [77, h, w] (each latent pixel a distribution over the
                                   77 positions, see attention.py) and word_maps [words, h, w] (the
                                   sum of each word's tokens); metadata: prompt, words, tokens, positions
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from ldm_cli.explain import attention

FORMAT = "ldm-attention-maps/1"
NORMALISATION = ("token_maps: mean over sampling steps, cross-attention layers (each upsampled bilinearly to "
                 "the latent size) and heads of the softmax attention probabilities of the conditional "
                 "prompt; at every latent pixel the 77 positions sum to 1. word_maps: the sum of each "
                 "word's token maps.")


class AttentionWatch:
    """What txt2img keeps for one image while recording; writes the files once the PNG is saved."""

    def __init__(self, tokenizer, prompt: str, recorder: attention.AttentionRecorder):
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.recorder = recorder

    def write_beside(self, png: Path, pixels) -> dict:
        from safetensors.torch import save_file

        from ldm_cli.errors import ModelError
        from ldm_cli.explain.plotting import attention_figure
        from ldm_cli.files.images import write_new_file

        if self.recorder.count == 0:
            raise ModelError("--attention-maps: this UNet has no cross-attention (attn2) modules to record")
        maps = attention.word_maps(self.tokenizer, self.prompt, self.recorder.token_maps)
        stem = Path(png).with_suffix("")
        tensors = {"token_maps": maps.token_maps.contiguous().float(), "word_maps": maps.word_maps.contiguous().float()}
        metadata = {"format": FORMAT, "prompt": self.prompt, "words": json.dumps(maps.words),
                    "token_positions": json.dumps(maps.token_positions), "tokens": json.dumps(maps.tokens),
                    "normalisation": NORMALISATION, "image": Path(png).name}
        raw = write_new_file(Path(f"{stem}-attention.safetensors"), lambda tmp: save_file(tensors, str(tmp), metadata),
                             suffix="-attention.safetensors")
        picture = attention_figure(pixels, maps, Path(f"{stem}-attention.png"))
        return {"attention_maps": str(raw), "attention_png": str(picture)}


@contextmanager
def watch_attention(text_to_image, prompt: str, plan):
    """The hook txt2img.run calls around each image when --attention-maps is on."""
    c = text_to_image.components
    latent = plan.latent_shape(c)[-2:]
    with attention.recording(c.unet, latent) as recorder:
        yield AttentionWatch(c.tokenizer, prompt, recorder)
