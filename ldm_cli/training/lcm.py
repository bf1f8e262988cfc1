"""Latent consistency distillation (Luo et al. 2023, LCM and LCM-LoRA), one batch at a time.

    n ~ U{0..N-1}, s = ddim[n] (N DDIM timesteps, k = T/N apart), t = max(s - k, 0)
    z_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps                    (forward diffusion)
    w ~ U[w_min, w_max]                                             (guidance; CFG scale is w + 1)
    student:  f(z_s, s) = c_skip(s) z_s + c_out(s) x0_pred(student(z_s, s))
    teacher:  x0, eps = cond + w (cond - uncond) of the frozen model (LoRA disabled), at s
              z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps           (one DDIM step s -> t)
    target:   f(z_t, t) of the target network, without gradient: the same LoRA'd student (LCM-LoRA
              keeps no EMA target), or for a full student its EMA (distill_full.py)
    loss = huber(f(z_s, s) - target) or l2

A full student also gets w itself as `timestep_cond` (the guidance embedding), student and target alike;
the teacher never does.

c_skip(t) = sd^2 / ((10 t)^2 + sd^2), c_out(t) = 10 t / sqrt((10 t)^2 + sd^2), sd = 0.5: at t = 0 the
consistency function is the identity (the boundary condition), as diffusers' LCMScheduler assumes with
timestep_scaling 10. v-prediction and epsilon teachers are both read as (x0, eps).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0  # diffusers' LCMScheduler default: the sampler applies the same c_skip/c_out
LOSS_TYPES = ("huber", "l2")


def boundary_scalings(timesteps: torch.Tensor, scaling: float = TIMESTEP_SCALING,
                      sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of the consistency parameterisation; (1, 0) at t = 0."""
    scaled = scaling * timesteps.double()
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip.float(), c_out.float()


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def to_x0_eps(output: torch.Tensor, sample: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: torch.Tensor,
              prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A UNet output (epsilon, v or sample) -> the predicted clean latents and noise."""
    abar = alphas_cumprod.to(sample.device)[timesteps]
    a, s = _column(abar.sqrt(), sample), _column((1 - abar).sqrt(), sample)
    if prediction_type == "epsilon":
        return (sample - s * output) / a, output
    if prediction_type == "v_prediction":
        return a * sample - s * output, a * output + s * sample
    if prediction_type == "sample":
        return output, (sample - a * output) / s
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


class DDIMSolver:
    """The teacher's ODE solver: N DDIM timesteps ddim[n] = round((n+1) T/N) - 1, one step jumps k = T/N."""

    def __init__(self, alphas_cumprod: torch.Tensor, num_train_timesteps: int, ddim_timesteps: int):
        self.step_ratio = num_train_timesteps // ddim_timesteps
        self.timesteps = (torch.arange(1, ddim_timesteps + 1) * self.step_ratio).round().long() - 1
        self.alphas_cumprod = alphas_cumprod.float()
        self.alphas_cumprod_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[self.timesteps[:-1]]]).float()

    def previous(self, index: torch.Tensor) -> torch.Tensor:
        """The timestep one solver step below ddim[index] (clamped at 0)."""
        return (self.timesteps[index] - self.step_ratio).clamp(min=0)

    def step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM (eta 0) from ddim[index] to the timestep below it."""
        prev = _column(self.alphas_cumprod_prev[index], x0)
        return prev.sqrt() * x0 + (1 - prev).sqrt() * eps


def consistency_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str, huber_c: float) -> torch.Tensor:
    if loss_type == "l2":
        return F.mse_loss(prediction.float(), target.float())
    return (torch.sqrt((prediction.float() - target.float()) ** 2 + huber_c**2) - huber_c).mean()


class LcmObjective:
    """One LCD loss per batch. `networks` gives the frozen teacher (a context) and the target network;
    with `w_embedding_dim` the student and the target get w as `timestep_cond`."""

    def __init__(self, scheduler_config, alphas_cumprod: torch.Tensor, ddim_timesteps: int, w_min: float,
                 w_max: float, loss_type: str = "huber", huber_c: float = 0.001, w_embedding_dim: int | None = None):
        self.prediction_type = scheduler_config["prediction_type"]
        self.alphas_cumprod = alphas_cumprod.float()
        self.solver = DDIMSolver(alphas_cumprod, scheduler_config["num_train_timesteps"], ddim_timesteps)
        self.w_min, self.w_max, self.loss_type, self.huber_c = w_min, w_max, loss_type, huber_c
        self.w_embedding_dim = w_embedding_dim

    def _f(self, unet, sample, timesteps, embeddings, w_cond) -> torch.Tensor:
        """The consistency function f(z, t) = c_skip z + c_out x0(z, t)."""
        extra = {} if w_cond is None else {"timestep_cond": w_cond}
        output = unet(sample, timesteps, encoder_hidden_states=embeddings, return_dict=False, **extra)[0]
        x0, _ = to_x0_eps(output.float(), sample, self.alphas_cumprod, timesteps, self.prediction_type)
        c_skip, c_out = boundary_scalings(timesteps)
        return _column(c_skip, sample) * sample + _column(c_out, sample) * x0

    def __call__(self, unet, networks, latents, embeddings, uncond, generator) -> torch.Tensor:
        from ldm_cli.pipeline.loop.guidance import w_embedding

        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        index = torch.randint(0, len(self.solver.timesteps), (batch,), generator=generator)
        start = self.solver.timesteps[index].to(latents.device)
        end = self.solver.previous(index).to(latents.device)
        w = (self.w_max - self.w_min) * torch.rand(batch, generator=generator) + self.w_min
        w_cond = None if self.w_embedding_dim is None else w_embedding(w, self.w_embedding_dim).to(latents)  # [B, D]
        abar = self.alphas_cumprod.to(latents.device)[start]
        noisy = _column(abar.sqrt(), latents) * latents + _column((1 - abar).sqrt(), latents) * noise

        prediction = self._f(unet, noisy, start, embeddings, w_cond)
        with torch.no_grad():
            with networks.teacher() as teacher:
                both = torch.cat([embeddings, uncond])
                out = teacher(torch.cat([noisy, noisy]), torch.cat([start, start]),
                              encoder_hidden_states=both, return_dict=False)[0].float()
            x0, eps = to_x0_eps(out, torch.cat([noisy, noisy]), self.alphas_cumprod, torch.cat([start, start]),
                                self.prediction_type)
            (x0_c, x0_u), (eps_c, eps_u), wc = x0.chunk(2), eps.chunk(2), _column(w, latents)
            x_prev = self.solver.step(x0_c + wc * (x0_c - x0_u), eps_c + wc * (eps_c - eps_u), index.to(latents.device))
            target = self._f(networks.target, x_prev, end, embeddings, w_cond)
        return consistency_loss(prediction, target, self.loss_type, self.huber_c)


class LoraNetworks:
    """LCM-LoRA: the teacher is the UNet with its adapters off; the target is the LoRA'd student itself."""

    def __init__(self, unet):
        self.target = unet

    @contextlib.contextmanager
    def teacher(self):
        self.target.disable_adapters()
        try:
            yield self.target
        finally:
            self.target.enable_adapters()
