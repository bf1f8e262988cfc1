"""A1111's SD1 conditioning (weights, chunks, BREAK, clip skip) against a direct transcription of its
math, diffusers' encode_prompt for plain prompts, and pixel parity with diffusers given our embeddings."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.pipeline.prompts.conditioning import PromptEncoder
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.pipeline.loop.sampling import Conditioning, _predict_unbatched, predict_noise
from ldm_cli.pipeline.prompts.text import encode_prompts
from ldm_cli.reference import reference_pipeline


@pytest.fixture(scope="module")
def components(tiny_model):
    return load_components(resolve_source(str(tiny_model)), "cpu", torch.float32)


def ids(tokenizer, word: str) -> list[int]:
    return tokenizer(word, add_special_tokens=False).input_ids


def reference(components, chunks, clip_skip=1):
    """chunks: [[(word, weight), ...], ...]; the math of A1111's sd_hijack_clip written out by hand."""
    tok, te = components.tokenizer, components.text_encoder
    outs = []
    for words in chunks:
        tokens, weights = [tok.bos_token_id], [1.0]
        for word, weight in words:
            for t in ids(tok, word):
                tokens.append(t)
                weights.append(weight)
        tokens += [tok.eos_token_id] * (77 - len(tokens))
        weights += [1.0] * (77 - len(weights))
        with torch.no_grad():
            out = te(torch.tensor([tokens]), output_hidden_states=True)
            z = out.last_hidden_state if clip_skip == 1 else te.final_layer_norm(out.hidden_states[-clip_skip])
        if set(weights) != {1.0}:  # z * 1 * (m / m) is z itself (and 0/0 where a tiny model's m is 0)
            before = z.mean()
            z = z * torch.tensor(weights)[None, :, None]
            z = z * (before / z.mean())
        outs.append(z)
    return torch.cat(outs, dim=1)


def encode(components, prompt, clip_skip=1, syntax="a1111"):
    return PromptEncoder(components.tokenizer, components.text_encoder, syntax, clip_skip).encode(prompt)


def test_plain_prompt_is_bit_identical_to_the_old_encoding(components):
    for prompt in ["a red circle on a blue background", "", "a: b, c; d"]:
        old = encode_prompts(components.tokenizer, components.text_encoder, [prompt])
        assert torch.equal(encode(components, prompt), old)


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_weighted_prompt(components, clip_skip):
    got = encode(components, "a (red:1.5) fox [in] snow", clip_skip)
    want = reference(components, [[("a", 1), ("red", 1.5), ("fox", 1), ("in", 1 / 1.1), ("snow", 1)]], clip_skip)
    assert got.shape == (1, 77, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_long_prompt_goes_in_chunks_of_75(components, clip_skip):
    got = encode(components, "word " * 100 + "(zebra:1.3)", clip_skip)
    want = reference(components, [[("word", 1)] * 75, [("word", 1)] * 25 + [("zebra", 1.3)]], clip_skip)
    assert got.shape == (1, 154, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_break_prompt(components, clip_skip):
    got = encode(components, "a cat BREAK (a dog:1.2)", clip_skip)
    want = reference(components, [[("a", 1), ("cat", 1)], [("a", 1.2), ("dog", 1.2)]], clip_skip)
    assert got.shape == (1, 154, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_plain_syntax_keeps_brackets_as_text(components):
    literal = encode(components, "a (red:1.5) fox", syntax="plain")
    old = encode_prompts(components.tokenizer, components.text_encoder, ["a (red:1.5) fox"])
    assert torch.equal(literal, old)
    assert not torch.allclose(literal, encode(components, "a (red:1.5) fox"))


@pytest.mark.parametrize("clip_skip", [1, 2, 3])
def test_clip_skip_equals_diffusers_clip_skip_minus_one(components, clip_skip):
    pipe = reference_pipeline(components, "ddim")
    te = components.text_encoder
    # diffusers 0.42.1 reaches for text_encoder.text_model, which transformers 5 flattened away
    object.__setattr__(te, "text_model", types.SimpleNamespace(final_layer_norm=te.final_layer_norm))
    try:
        theirs, _ = pipe.encode_prompt("a lighthouse at dusk", "cpu", 1, False, clip_skip=clip_skip - 1 or None)
    finally:
        object.__delattr__(te, "text_model")
    torch.testing.assert_close(encode(components, "a lighthouse at dusk", clip_skip), theirs, rtol=0, atol=1e-6)


def _ours(components, prompt, negative, scheduler="euler-a", **plan):
    plan = SamplingPlan(64, 64, 4, 7.5, scheduler, negative, **plan)
    return TextToImage(components, "cpu", torch.float32).generate(prompt, 5, plan).image[0].permute(1, 2, 0).numpy()


def _theirs(components, cond, uncond, scheduler="euler-a"):
    pipe = reference_pipeline(components, scheduler)
    out = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=4, guidance_scale=7.5,
               generator=torch.Generator().manual_seed(5), output_type="np", height=64, width=64)
    return out.images[0]


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_pixel_parity_with_diffusers_given_our_embeddings(components, clip_skip):
    prompt = "a (red:1.4) circle, " * 20 + "BREAK [blue] background"
    negative = "blurry, (lowres:1.2), " * 40
    cond, uncond = encode(components, prompt, clip_skip), encode(components, negative, clip_skip)
    assert cond.shape[1] == uncond.shape[1] == 231
    mine = _ours(components, prompt, negative, clip_skip=clip_skip)
    assert np.abs(mine - _theirs(components, cond, uncond)).max() <= 1e-4


def test_pad_conds_pads_the_shorter_with_the_empty_prompt(components):
    prompt, negative = "word " * 80, "blurry"
    cond, uncond, empty = (encode(components, p) for p in (prompt, negative, ""))
    padded = torch.cat([uncond, empty], dim=1)
    mine = _ours(components, prompt, negative, pad_conds=True)
    assert np.abs(mine - _theirs(components, cond, padded)).max() <= 1e-4


def test_unequal_lengths_run_two_unet_calls_with_the_same_guidance(components):
    """Without padding, prompt and negative of different lengths go through the UNet one at a time;
    for equal lengths that path gives what the batched path gives."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(components.scheduler_config)
    scheduler.set_timesteps(4)
    t = scheduler.timesteps[0]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    c = Conditioning(encode(components, "a cat"), encode(components, "a dog"), 7.5)
    with torch.no_grad():
        torch.testing.assert_close(_predict_unbatched(components.unet, scheduler, x, t, c),
                                   predict_noise(components.unet, scheduler, x, t, c), rtol=0, atol=1e-4)
    long_negative = _ours(components, "a cat", "blurry " * 80)
    assert long_negative.shape == (64, 64, 3) and np.isfinite(long_negative).all()
