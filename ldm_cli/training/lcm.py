"""Latent consistency distillation (Luo et al. 2023, LCM and LCM-LoRA), one batch at a time.

    n ~ U{0..N-1}, s = ddim[n] (N DDIM timesteps, k = T/N apart), t = max(s - k, 0)
    z_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps                    (forward diffusion)
    w ~ U[w_min, w_max]                                             (guidance; CFG scale is w + 1)
    student:  f(z_s, s) = c_skip(s) z_s + c_out(s) x0_pred(student(z_s, s))
    teacher:  x0, eps = cond + w (cond - uncond) of the frozen model (LoRA disabled), at s
              z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps           (one DDIM step s -> t)
    target:   f(z_t, t) of the same LoRA'd student, without gradient (LCM-LoRA keeps no EMA target)
    loss = huber(f(z_s, s) - target) or l2

c_skip(t) = sd^2 / ((10 t)^2 + sd^2), c_out(t) = 10 t / sqrt((10 t)^2 + sd^2), sd = 0.5: at t = 0 the
consistency function is the identity (the boundary condition), as diffusers' LCMScheduler assumes with
timestep_scaling 10. v-prediction and epsilon teachers are both read as (x0, eps).
"""

from __future__ import annotations

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
    """One LCD loss per batch; `unet` carries the trainable LoRA, `teacher` disables it (a context)."""

    def __init__(self, scheduler_config, alphas_cumprod: torch.Tensor, ddim_timesteps: int, w_min: float,
                 w_max: float, loss_type: str = "huber", huber_c: float = 0.001):
        self.prediction_type = scheduler_config["prediction_type"]
        self.alphas_cumprod = alphas_cumprod.float()
        self.solver = DDIMSolver(alphas_cumprod, scheduler_config["num_train_timesteps"], ddim_timesteps)
        self.w_min, self.w_max, self.loss_type, self.huber_c = w_min, w_max, loss_type, huber_c

    def _f(self, unet, sample, timesteps, embeddings) -> torch.Tensor:
        """The consistency function f(z, t) = c_skip z + c_out x0(z, t)."""
        output = unet(sample, timesteps, encoder_hidden_states=embeddings, return_dict=False)[0]
        x0, _ = to_x0_eps(output.float(), sample, self.alphas_cumprod, timesteps, self.prediction_type)
        c_skip, c_out = boundary_scalings(timesteps)
        return _column(c_skip, sample) * sample + _column(c_out, sample) * x0

    def __call__(self, unet, target_unet, teacher, latents, embeddings, uncond, generator) -> torch.Tensor:
        batch = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        index = torch.randint(0, len(self.solver.timesteps), (batch,), generator=generator)
        start = self.solver.timesteps[index].to(latents.device)
        end = self.solver.previous(index).to(latents.device)
        w = (self.w_max - self.w_min) * torch.rand(batch, generator=generator) + self.w_min
        abar = self.alphas_cumprod.to(latents.device)[start]
        noisy = _column(abar.sqrt(), latents) * latents + _column((1 - abar).sqrt(), latents) * noise

        prediction = self._f(unet, noisy, start, embeddings)
        with torch.no_grad():
            with teacher():
                both = torch.cat([embeddings, uncond])
                out = target_unet(torch.cat([noisy, noisy]), torch.cat([start, start]),
                                  encoder_hidden_states=both, return_dict=False)[0].float()
            x0, eps = to_x0_eps(out, torch.cat([noisy, noisy]), self.alphas_cumprod, torch.cat([start, start]),
                                self.prediction_type)
            (x0_c, x0_u), (eps_c, eps_u), wc = x0.chunk(2), eps.chunk(2), _column(w, latents)
            x_prev = self.solver.step(x0_c + wc * (x0_c - x0_u), eps_c + wc * (eps_c - eps_u), index.to(latents.device))
            target = self._f(target_unet, x_prev, end, embeddings)
        return consistency_loss(prediction, target, self.loss_type, self.huber_c)


class adapters_off:
    """Within: the UNet without its LoRA (the teacher); the adapters train again after."""

    def __init__(self, unet):
        self.unet = unet

    def __enter__(self):
        self.unet.disable_adapters()

    def __exit__(self, *exc):
        self.unet.enable_adapters()
