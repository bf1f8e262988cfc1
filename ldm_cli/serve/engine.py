"""The one loaded model of `ldm serve`, and how it runs a job: the steps `ldm generate` takes,
minus the files (images come back as PNG bytes carrying the same `parameters` and `ldm` chunks)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.files.images import png_bytes, save_png
from ldm_cli.models import network_files
from ldm_cli.models.performance import PerformanceSettings
from ldm_cli.pipeline.codec import latents as latent_ops
from ldm_cli.pipeline.config import GenerateSettings, ModelSettings
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.pipeline.records.network_record import networks_record
from ldm_cli.pipeline.records.networks import plan_networks
from ldm_cli.pipeline.records.provenance import component_hashes, png_text
from ldm_cli.pipeline.records.recipe import plan_for_image
from ldm_cli.pipeline.loop.sampling import StepInfo, normalized_latents
from ldm_cli.pipeline.loop.schedulers import sampler_warning
from ldm_cli.pipeline.txt2img import image_record, load_model, output_path, resolve_plan
from ldm_cli.serve.requests import JobSpec, ServerDefaults

SERVED_INIT_IMAGE = "request:init_images[0]"  # what a served img2img PNG records as its init image
SERVED_MASK = "request:mask"


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
    """Loads the model once (as `ldm generate` does, LoRAs merged) and makes images on request. A job
    whose <lora:> tags or embeddings differ from the loaded set loads the model afresh with its set,
    as `ldm generate` does for each LoRA-set group (exact: no unmerging arithmetic)."""

    def __init__(self, model: ModelSettings, loras: tuple[str, ...] = (), performance: PerformanceSettings = PerformanceSettings(),
                 lora_dirs: tuple[Path, ...] = (), embeddings_dirs: tuple[Path, ...] = ()):
        self.base = GenerateSettings(prompts=("ldm serve",), model=model, loras=loras, performance=performance,
                                     lora_dirs=lora_dirs, embeddings_dirs=embeddings_dirs)
        self.model_settings = model
        self.loras = loras
        self.lora_dirs = network_files.folders("--lora-dir", lora_dirs, network_files.LORA_DIR_ENV)
        self.embeddings_dirs = network_files.folders("--embeddings-dir", embeddings_dirs, network_files.EMBEDDINGS_DIR_ENV)
        self.loaded_set = None
        self._load(plan_networks(self.base).flag_loras, ())

    def _load(self, loras, embeddings) -> None:
        wanted = _network_set(loras, embeddings)
        if wanted == self.loaded_set:
            return
        previous = getattr(self, "_loaded_networks", None)
        self.components = None  # let the old weights go before the new ones load (one model in memory)
        try:
            self.components, self.device, self.dtype, self.load_seconds = load_model(self.base, [u.spec for u in loras], embeddings)
        except BaseException:
            if previous is not None:  # a LoRA or embedding that cannot be used fails this job, not the server
                self.loaded_set = None
                self._load(*previous)
            raise
        self.hashes = component_hashes(self.components)
        self.preview_map = latent_ops.fit_preview_map(self.components.vae)
        self.loaded_set, self._loaded_networks = wanted, (loras, embeddings)

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

    def vae_name(self) -> str | None:
        """The --vae the model was loaded with (A1111's sd_vae names it by file name), or None: its own."""
        vae = self.model_settings.vae
        return Path(vae).name if vae else None

    def defaults(self) -> ServerDefaults:
        return ServerDefaults(self.loras, self.lora_dirs, self.embeddings_dirs, self.vae_name())

    # --- running a job ----------------------------------------------------------------------

    def preview(self, info: StepInfo):
        """The cheap latent->RGB picture of a step ([H, W, 3] uint8), for /sdapi/v1/progress."""
        return latent_ops.preview(normalized_latents(info), self.preview_map, self.components.vae_scale_factor)

    def run(self, job: JobSpec, on_image, on_step) -> JobResult:
        """Make every image of `job` as txt2img.run does; `on_step` may raise Interrupted, which ends the
        job after the images already made."""
        s, start, networks = job.settings, job.start, job.networks
        prompt = s.prompts[0]
        self._load(networks.loras_for(prompt), networks.embeddings)
        c = self.components
        start.prepare(c, self.hashes.get("vae") or self.hashes.get("checkpoint"))
        plan = start.fit_plan(resolve_plan(s, c))
        text_to_image = TextToImage(c, self.device, self.dtype, start)
        text_to_image.text_for_clip = networks.clip_text
        base_seed = s.seed if s.seed is not None else secrets.randbelow(2**32)
        result = JobResult(plan, prompt, [base_seed + i for i in range(s.num_images)])
        result.warnings += [w.removeprefix("warning: ") for w in networks.warnings]
        warning = sampler_warning(plan.scheduler, plan.steps, c.scheduler_config)
        if warning:
            result.warnings.append(warning.removeprefix("warning: "))
        for number, seed in enumerate(result.seeds):
            on_image(number, len(result.seeds))
            steps_run = []

            def counted(info: StepInfo) -> None:
                steps_run.append(info.index)
                on_step(info)

            image_plan = plan_for_image(plan, seed - base_seed)
            try:
                made = text_to_image.generate(prompt, seed, image_plan, counted)
            except Skipped:
                continue
            except Interrupted:
                result.interrupted = True
                break
            served = self._served(s, image_plan, made, start, networks, len(steps_run))
            if job.save:
                served.path = str(save_png(made.pixels, output_path(s, made.prompt, made.seed), served.text))
            result.images.append(served)
        return result

    def _served(self, s: GenerateSettings, plan: SamplingPlan, made, start, networks, steps_run: int) -> ServedImage:
        """The PNG `ldm generate` would write for this image, with the same two metadata chunks."""
        timings = {"generate_s": round(made.seconds, 3), "steps_per_s": round(steps_run / made.seconds, 3) if made.seconds else None,
                   "model_load_s": round(self.load_seconds, 3)}
        start_record = start.record()
        if "img2img" in start_record:  # the request's pictures have no path; say where they came from
            start_record["img2img"] = {**start_record["img2img"], "init_image": SERVED_INIT_IMAGE}
        if start_record.get("inpaint", {}).get("mask"):
            start_record["inpaint"] = {**start_record["inpaint"], "mask": SERVED_MASK}
        record = image_record(s, self.components, plan, self.hashes, self.device, self.dtype, made, timings, start_record,
                              networks_record(networks, made.prompt, s.negative_prompt))
        text = png_text(record)
        return ServedImage(made.seed, png_bytes(made.pixels, text), text["parameters"], record, text)


def _network_set(loras, embeddings) -> tuple:
    return (tuple((str(u.path.resolve()), u.scale) for u in loras),
            tuple((str(e.path.resolve()), e.token) for e in embeddings))


def now_stamp() -> str:
    """A1111's job_timestamp format."""
    return time.strftime("%Y%m%d%H%M%S")
