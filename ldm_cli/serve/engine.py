"""The one loaded model of `ldm serve`, and how it runs a job: the steps `ldm generate` takes,
minus the files (images come back as PNG bytes carrying the same `parameters` and `ldm` chunks)."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ldm_cli.files.images import png_bytes, save_png
from ldm_cli.models.devices import dtype_name
from ldm_cli.models.performance import PerformanceSettings
from ldm_cli.pipeline import img2img
from ldm_cli.pipeline import latents as latent_ops
from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
from ldm_cli.pipeline.generation import SamplingPlan
from ldm_cli.pipeline.provenance import build_record, component_hashes, png_text
from ldm_cli.pipeline.sampling import StepInfo, normalized_latents
from ldm_cli.pipeline.schedulers import sampler_warning
from ldm_cli.pipeline.txt2img import load_model, output_path, resolve_plan
from ldm_cli.serve.requests import JobSpec

SERVED_INIT_IMAGE = "request:init_images[0]"  # what a served img2img PNG records as its init image


class Interrupted(Exception):
    """Raised from the step callback when /sdapi/v1/interrupt (or shutdown) asks the job to stop."""


class Skipped(Exception):
    """Raised from the step callback when /sdapi/v1/skip drops the current image; the job goes on."""


@dataclass
class ServedImage:
    seed: int
    png: bytes
    infotext: str
    record: dict
    text: dict[str, str]  # the PNG's text chunks
    path: str | None = None  # where save_images wrote it


@dataclass
class JobResult:
    plan: SamplingPlan
    prompt: str
    seeds: list[int]  # every seed the request asked for, made or not
    images: list[ServedImage] = field(default_factory=list)
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)
    timestamp: str = field(default_factory=lambda: now_stamp())  # A1111's job_timestamp: when the job began


class Engine:
    """Loads the model once (as `ldm generate` does, LoRAs merged) and makes images on request."""

    def __init__(self, model: ModelSettings, loras: tuple[str, ...] = (), performance: PerformanceSettings = PerformanceSettings()):
        base = GenerateSettings(prompts=("ldm serve",), model=model, loras=loras, performance=performance)
        self.model_settings = model
        self.loras = loras
        self.components, self.device, self.dtype, self.load_seconds = load_model(base)
        self.hashes = component_hashes(self.components)
        self.preview_map = latent_ops.fit_preview_map(self.components.vae)

    # --- what the model is called -----------------------------------------------------------

    @property
    def sha256(self) -> str:
        return self.hashes.get("checkpoint") or self.hashes.get("unet") or ""

    @property
    def name(self) -> str:
        return self.components.source.display_name

    @property
    def title(self) -> str:
        """A1111's checkpoint title: 'name [shorthash]'."""
        return f"{self.name} [{self.sha256[:10]}]" if self.sha256 else self.name

    def model_item(self) -> dict:
        source = self.components.source
        filename = str(Path(source.path).resolve()) if source.path else source.spec
        return {"title": self.title, "model_name": self.name, "hash": self.sha256[:10] or None,
                "sha256": self.sha256 or None, "filename": filename, "config": None}

    def knows(self, wanted: str) -> bool:
        """Whether a client's checkpoint name means the loaded model (A1111 accepts title, name or hash)."""
        wanted = wanted.strip()
        names = {self.title, self.name, self.components.source.spec, self.sha256[:10], self.sha256,
                 Path(self.name).stem}
        return wanted in names or Path(wanted).stem == Path(self.name).stem

    # --- running a job ----------------------------------------------------------------------

    def preview(self, info: StepInfo):
        """The cheap latent->RGB picture of a step ([H, W, 3] uint8), for /sdapi/v1/progress."""
        return latent_ops.preview(normalized_latents(info), self.preview_map, self.components.vae_scale_factor)

    def run(self, job: JobSpec, on_image, on_step) -> JobResult:
        """Make every image of `job`; `on_step` may raise Interrupted, which ends the job after the images already made."""
        s, c = job.settings, self.components
        plan = img2img.fit_plan(resolve_plan(s, c), job.init)
        generator = img2img.make_generator(c, self.device, self.dtype, job.init, self.hashes.get("vae") or self.hashes.get("checkpoint"))
        base_seed = s.seed if s.seed is not None else secrets.randbelow(2**32)
        result = JobResult(plan, s.prompts[0], [base_seed + i for i in range(s.num_images)])
        warning = sampler_warning(plan.scheduler, plan.steps, c.scheduler_config)
        if warning:
            result.warnings.append(warning.removeprefix("warning: "))
        for number, seed in enumerate(result.seeds):
            on_image(number, len(result.seeds))
            steps_run = []

            def counted(info: StepInfo) -> None:
                steps_run.append(info.index)
                on_step(info)

            try:
                made = generator.generate(s.prompts[0], seed, plan, counted)
            except Skipped:
                continue
            except Interrupted:
                result.interrupted = True
                break
            served = self._served(s, plan, made, job.init, len(steps_run))
            if job.save:
                served.path = str(save_png(made.pixels, output_path(s, made.prompt, made.seed), served.text))
            result.images.append(served)
        return result

    def _served(self, s: GenerateSettings, plan: SamplingPlan, made, init, steps_run: int) -> ServedImage:
        """The PNG `ldm generate` would write for this image, with the same two metadata chunks."""
        resolved = {**asdict(plan), "num_images": s.num_images}
        if self.loras:
            resolved["loras"] = list(self.loras)
        timings = {"generate_s": round(made.seconds, 3), "steps_per_s": round(steps_run / made.seconds, 3) if made.seconds else None,
                  "model_load_s": round(self.load_seconds, 3)}
        extra = None
        if init is not None:
            extra = {"img2img": {**init.record(), "init_image": SERVED_INIT_IMAGE}}
        record = build_record(prompt=made.prompt, seed=made.seed, settings=resolved, components=self.components,
                              hashes=self.hashes, device=self.device, dtype=dtype_name(self.dtype), timings=timings, extra=extra)
        text = png_text(record)
        return ServedImage(made.seed, png_bytes(made.pixels, text), text["parameters"], record, text)


def now_stamp() -> str:
    """A1111's job_timestamp format."""
    return time.strftime("%Y%m%d%H%M%S")
