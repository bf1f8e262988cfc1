"""The demo model's recipe: every size, step count, learning rate and seed in one place.

`make demo-model` (ldm_cli.demo.build) follows this recipe; changing a number here changes the model.
Budgeted to finish within 2 hours on a shared 2-core CPU (see README "The demo model").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class VaeRecipe:
    block_out_channels: tuple[int, ...] = (8, 16, 32, 64)  # 4 blocks -> downsampling factor 8
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 2  # groups of >= 4 channels: a flat colour survives GroupNorm
    crop: int = 32  # most steps see random crops (the VAE is convolutional) ...
    crop_batch: int = 16
    crop_steps: int = 4000
    full_batch: int = 2  # ... the last steps see whole 128x128 images (GroupNorm statistics)
    full_steps: int = 300
    lr: float = 2e-3
    warmup: int = 50
    kl_weight: float = 1e-6  # beta of the ELBO: reconstruction + beta * KL(q(z|x) || N(0, I))
    seed: int = 1
    # Then the decoder alone, on whole images: sharper edges, and the latents (the encoder's) stay the same.
    decoder_steps: int = 600
    decoder_batch: int = 2
    decoder_lr: float = 5e-4

    @property
    def steps(self) -> int:
        return self.crop_steps + self.full_steps


@dataclass(frozen=True)
class TextRecipe:
    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4


@dataclass(frozen=True)
class UnetRecipe:
    block_out_channels: tuple[int, ...] = (32, 64)  # 16x16 and 8x8 latents
    # Attention (self + cross) only at 8x8 and in the middle: at 16x16 it cost 40% of a CPU step.
    down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    attention_head_dim: int = 4  # diffusers' legacy name: the number of heads
    norm_num_groups: int = 8
    batch: int = 24
    steps: int = 12000
    lr: float = 1.5e-3
    warmup: int = 100
    caption_dropout: float = 0.1  # empty caption -> the unconditional branch of classifier-free guidance
    # The noise schedule. SD1's scaled_linear betas leave sqrt(abar_T) = 0.068 of the signal at t=999: at
    # 16x16 latents the mean of pure-looking noise still tells a flat image's colours, so the model learns
    # to read them from x_T instead of the prompt, and at sampling time (true noise) colours come out
    # random. Rescaling the same betas so that only `terminal_signal` is left (Lin et al. 2023, "Common
    # Diffusion Noise Schedules and Sample Steps are Flawed"; not exactly 0, so sigma-based samplers stay
    # finite) removes that shortcut; it needs v-prediction (epsilon carries no information at SNR ~ 0) and
    # trailing timesteps (sampling starts at t=999).
    terminal_signal: float | None = 0.004  # None: SD1's own schedule
    prediction_type: str = "v_prediction"
    snr_gamma: float | None = 5.0  # min-SNR-gamma loss weights (Hang et al. 2023): faster convergence
    noise_offset: float = 0.0  # offset noise: not needed once x_T carries no colour
    ema_decay: float | None = 0.999  # the shipped weights are this moving average of the trained ones
    seed: int = 2


@dataclass(frozen=True)
class DemoRecipe:
    count: int = 12000  # training images
    data_seed: int = 0
    vae: VaeRecipe = field(default_factory=VaeRecipe)
    text: TextRecipe = field(default_factory=TextRecipe)
    unet: UnetRecipe = field(default_factory=UnetRecipe)

    def to_dict(self) -> dict:
        return asdict(self)


RECIPE = DemoRecipe()
