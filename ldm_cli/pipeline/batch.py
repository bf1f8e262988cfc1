"""Many prompts, many processes: the (prompt x image) jobs of one `ldm generate`, sharded and resumable.

    accelerate launch --multi_gpu --num_processes 2 -m ldm_cli generate --prompts-file F --seed 1 -o out/

Each process takes the jobs i with i % world_size == rank (rank and world size from the RANK /
WORLD_SIZE variables that `accelerate launch` (torchrun) sets; no process group is started, the
processes never talk to each other). Job i is (prompt p, image k) in prompt-major order with seed
base_seed + k, so an image is the same whichever process makes it.

The manifest is ONE file, `<out>/manifest.jsonl`: each process appends one JSON line per image it
wrote, under an exclusive flock, in a single write, after the PNG is in place (PNGs are written
atomically, so a listed file is complete). `--resume` skips the jobs the manifest lists whose file is
still there; a file that exists at its job's name but missed its manifest line (killed in between)
is adopted from its own PNG record when prompt and seed match.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ldm_cli.errors import UsageError
from ldm_cli.files.images import slugify

MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class Job:
    index: int  # position among all jobs of the run (prompt-major)
    prompt: str
    image: int  # k: the prompt's k-th image, seed = base_seed + k
    seed: int
    path: Path | None  # deterministic file name in batch mode, None -> txt2img's usual name


def process_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as accelerate launch / torchrun set them; (0, 1, 0) when alone."""
    def number(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    world = max(number("WORLD_SIZE", 1), 1)
    rank = number("RANK", 0)
    return (rank if 0 <= rank < world else 0), world, number("LOCAL_RANK", rank)


def rank_device(device: str) -> str:
    """With several processes on CUDA, process with local rank r uses cuda:r."""
    _, world, local = process_rank()
    return f"cuda:{local}" if world > 1 and device == "cuda" else device


def batch_mode(settings) -> bool:
    """A manifest and deterministic names: --prompts-file, --resume or several processes, into a folder."""
    from ldm_cli.pipeline.config import output_is_folder

    wanted = settings.resume or settings.prompts_from_file or process_rank()[1] > 1
    return bool(wanted) and output_is_folder(settings.out or Path("outputs"))


def check_batch(settings) -> None:
    """Before any model loads: batch mode needs a folder, and (with several processes) a fixed seed."""
    from ldm_cli.pipeline.config import output_is_folder

    out = settings.out or Path("outputs")
    world = process_rank()[1]
    if not output_is_folder(out) and (settings.resume or world > 1):
        raise UsageError(f"--out {out}: --resume and several processes write a folder with a manifest; pass a folder")
    if not batch_mode(settings):
        return
    if world > 1 and settings.seed is None and not _manifest_lines(out / MANIFEST_NAME):
        raise UsageError(f"{world} processes need one --seed to agree on every image's seed; pass --seed N")
    manifest = out / MANIFEST_NAME
    if output_is_folder(out) and manifest.exists() and not settings.resume:
        raise UsageError(f"--out {out} already holds a run ({MANIFEST_NAME}); pass --resume to finish it, or choose another --out")


def plan_jobs(settings, base_seed: int | None) -> tuple[list[Job], int]:
    """This process's jobs still to make, and the base seed (taken from the manifest on --resume without --seed)."""
    out = settings.out or Path("outputs")
    batch = batch_mode(settings)
    manifest = out / MANIFEST_NAME
    done = _done(manifest) if batch and settings.resume else {}
    if base_seed is None:
        base_seed = next((line["seed"] - line["image"] for line in done.values()), None)
    if base_seed is None:
        raise UsageError(f"--resume without --seed: {manifest} lists no image to take the seed from; pass --seed N")
    jobs = _all_jobs(settings, base_seed, out if batch else None)
    for job in jobs:
        recorded = done.get(job.index)
        if recorded and (recorded["prompt"], recorded["seed"]) != (job.prompt, job.seed):
            raise UsageError(f"--resume: {manifest} line for job {job.index} is {recorded['prompt']!r} seed "
                             f"{recorded['seed']}, not {job.prompt!r} seed {job.seed}; it was another run: choose another --out")
    if not batch:
        return jobs, base_seed
    rank, world, _ = process_rank()
    mine = [job for job in jobs if job.index % world == rank]
    if settings.resume:
        mine = [job for job in mine if not _already_made(job, done.get(job.index), manifest)]
    return mine, base_seed


def _all_jobs(settings, base_seed: int, folder: Path | None) -> list[Job]:
    jobs, seen = [], {}
    for prompt in settings.prompts:
        for k in range(settings.num_images):
            index = len(jobs)
            path = None
            if folder is not None:  # "slug-seed.png", and -2, -3 ... for repeats, numbered in job order
                stem = f"{slugify(prompt)}-{base_seed + k}"
                seen[stem] = seen.get(stem, 0) + 1
                path = folder / (f"{stem}.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.png")
            jobs.append(Job(index, prompt, k, base_seed + k, path))
    return jobs


def _already_made(job: Job, recorded: dict | None, manifest: Path) -> bool:
    if recorded is not None:  # the path as written, or beside the manifest (the folder was moved)
        return Path(recorded["path"]).is_file() or (manifest.parent / Path(recorded["path"]).name).is_file()
    if job.path is None or not job.path.is_file():
        return False
    # Written, but killed before its manifest line: adopt it when its own record says it is this job.
    try:
        from ldm_cli.files.metadata import read_png_metadata

        record = read_png_metadata(job.path)["ldm"] or {}
    except Exception:  # not our PNG: make the job again under the next free name
        return False
    if (record.get("prompt"), record.get("seed")) != (job.prompt, job.seed):
        return False
    append_line(manifest, manifest_line(job, job.path, record.get("settings", {}), record.get("dtype")))
    return True


def manifest_line(job: Job, path: Path, settings: dict, dtype: str | None) -> dict:
    keys = ("steps", "guidance", "scheduler", "width", "height", "negative_prompt", "schedule_type", "loras")
    return {
        "path": str(path), "prompt": job.prompt, "seed": job.seed, "job": job.index, "image": job.image,
        "settings": {key: settings[key] for key in keys if key in settings}, "dtype": dtype,
    }


def append_line(manifest: Path, line: dict) -> None:
    """One JSON line appended under an exclusive lock, in one write (processes never interleave)."""
    import fcntl

    manifest.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    fd = os.open(manifest, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        end = os.lseek(fd, 0, os.SEEK_END)
        if end and os.pread(fd, 1, end - 1) != b"\n":  # a torn line from a killed process stays on its own line
            data = b"\n" + data
        os.write(fd, data)
    finally:
        os.close(fd)  # closing releases the lock


def read_manifest(manifest: Path) -> list[dict]:
    """Every image of the run, in job order: the last line of each job (a job re-made on --resume after
    its file was deleted has two), a torn line from a killed process skipped."""
    return [line for _, line in sorted(_done(manifest).items())]


def _manifest_lines(manifest: Path) -> list[dict]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


def _done(manifest: Path) -> dict[int, dict]:
    return {line["job"]: line for line in _manifest_lines(manifest)}
