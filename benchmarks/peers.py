"""ldm against the CPU peers, OpenVINO and stable-diffusion.cpp, in one run on this machine.

    PYTHONPATH=. .venv/bin/python -m benchmarks.peers [--size 512 | --quick] [--sdcpp-types f32,f16,q8_0]
    make bench-peers [QUICK=1]          (or `make bench PEERS=1`)

Same weights: SD1.5's architecture with random weights (benchmarks/models.sd15_folder); sd.cpp gets
them as one single-file checkpoint in the original LDM key layout. Same method for every row: each
runs in its own process (its own venv, benchmarks/peer_venvs.py) with --threads threads and times
seconds per guided step inside that process as the difference between a 2-step and a 6-step picture
(benchmarks/peer_protocol.py), prompt and seed fixed. Rows:

    ldm --dtype auto          the default, the baseline of every ratio (bf16 on CPUs with native bf16)
    ldm --dtype fp32 / bf16   the other dtype (bf16 only where the CPU has native bf16)
    OpenVINO default / f32    optimum-intel, static shapes, its default precision hint / forced f32
    sd.cpp <type>             stable-diffusion-cpp-python, weights as --sdcpp-types

Quality beside each speed: PSNR/SSIM of the 6-step picture against ldm fp32's. ldm and OpenVINO share
DDIM and ldm's starting noise; sd.cpp draws its own noise (so "different RNG"), and its other types
are compared with its own f32 picture. Writes benchmarks/results/peers.json and peers.md
(--size other than 512: peers-<size>.json/.md). Not part of the default `make bench` (it installs two
venvs, about 2 GB, caches 9 GB of converted weights, and runs for 20-30 minutes at 512 px on 2 busy cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.peer_venvs import PEERS, VENVS, ensure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def prepare(size: int, seed: int) -> tuple[Path, Path, Path]:
    """The model folder, sd.cpp's single-file checkpoint and a work folder with every row's inputs."""
    from benchmarks.models import CACHE, sd15_folder

    folder = sd15_folder()
    checkpoint = CACHE / "sd15-random-ldm-keys.safetensors"
    if not checkpoint.exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from ldm_checkpoint import export_single_file  # the tests' A1111-layout writer, reused

        print(f"peers: writing {checkpoint.name} (single file, LDM keys) for sd.cpp", flush=True)
        export_single_file(folder, checkpoint.with_suffix(".partial"))
        checkpoint.with_suffix(".partial").rename(checkpoint)
    classic_text_keys(folder)
    return folder, checkpoint, write_inputs(folder, CACHE / f"peers-{size}", size, seed)


def write_inputs(folder: Path, work: Path, size: int, seed: int) -> Path:
    """ldm's DDIM scheduler config and its seeded starting noise, which the OpenVINO rows are given."""
    import torch

    from ldm_cli.pipeline.loop.noise import seeded_noise
    from ldm_cli.pipeline.loop.schedulers import build_scheduler

    work.mkdir(parents=True, exist_ok=True)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    (work / "scheduler.json").write_text(json.dumps(dict(build_scheduler("ddim", config).config)))
    channels = json.loads((folder / "unet" / "config.json").read_text())["in_channels"]
    factor = 2 ** (len(json.loads((folder / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
    latent = size // factor
    noise = seeded_noise((1, channels, latent, latent), torch.Generator("cpu").manual_seed(seed), torch.float32)
    np.save(work / "noise.npy", noise.numpy())
    return work


def classic_text_keys(folder: Path) -> Path:
    """The folder as older transformers (the one optimum-intel pins) reads it: its text encoder's keys
    with the `text_model.` prefix that newer transformers drops when saving; the rest are links."""
    from safetensors.torch import load_file, save_file

    target = folder.parent / f"{folder.name}-classic-text-keys"
    if (target / ".complete").exists():
        return target
    target.mkdir(exist_ok=True)
    for part in folder.iterdir():
        if part.name not in ("text_encoder", ".complete") and not (target / part.name).exists():
            (target / part.name).symlink_to(part.resolve())
    (target / "text_encoder").mkdir(exist_ok=True)
    shutil.copy(folder / "text_encoder" / "config.json", target / "text_encoder" / "config.json")
    state = load_file(folder / "text_encoder" / "model.safetensors")
    save_file({k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()},
              str(target / "text_encoder" / "model.safetensors"))
    (target / ".complete").write_text("ok\n")
    return target


def rows(args, folder: Path, checkpoint: Path) -> list[dict]:
    from ldm_cli.models.devices import auto_cpu_dtype, cpu_bf16_flags

    auto, _ = auto_cpu_dtype(json.loads((folder / "unet" / "config.json").read_text()))
    other = "fp32" if auto == "bf16" else ("bf16" if cpu_bf16_flags() else None)  # bf16 only where it is native
    found = [dict(key="ldm-auto", label=f"ldm --dtype auto ({auto}, the default)", peer="ldm", dtype=auto,
                  argv=["-m", "benchmarks.peer_ldm", "--dtype", "auto", "--model", str(folder)])]
    if other:
        found.append(dict(key=f"ldm-{other}", label=f"ldm --dtype {other}", peer="ldm", dtype=other,
                          argv=["-m", "benchmarks.peer_ldm", "--dtype", other, "--model", str(folder)]))
    ir, classic = folder.parent / "openvino-sd15-random", folder.parent / f"{folder.name}-classic-text-keys"
    for precision, label in (("default", "OpenVINO, static shapes, default precision hint"),
                             ("f32", "OpenVINO, static shapes, f32 forced")):
        found.append(dict(key=f"openvino-{precision}", label=label, peer="openvino", argv=[
            "-m", "benchmarks.peer_openvino", "--model", str(classic), "--ir", str(ir), "--precision", precision]))
    for wtype in args.sdcpp_types.split(","):
        found.append(dict(key=f"sdcpp-{wtype}", label=f"stable-diffusion.cpp {wtype}", peer="sdcpp",
                          argv=["-m", "benchmarks.peer_sdcpp", "--checkpoint", str(checkpoint), "--wtype", wtype]))
    found = [r for r in found if r["peer"] in args.peers.split(",")]
    if args.rows:  # a re-check of some rows, in the order given
        by_key = {r["key"]: r for r in found}
        found = [by_key[key] for key in args.rows.split(",") if key in by_key]
    return found


def run_row(row: dict, python: Path, args, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    command = [str(python), *row["argv"], "--size", str(args.size), "--threads", str(args.threads),
               "--seed", str(args.seed), "--work", str(work), "--row", row["key"]]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.row_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.row_timeout} s"}
    log = work / f"{row['key']}.log"
    log.write_text(done.stdout + done.stderr)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-1:]
        return {"error": f"exit {done.returncode}: {(tail or ['no output'])[0][:200]} (log: {log})"}
    report = json.loads(lines[-1])
    report.update(wall_s=round(time.perf_counter() - started, 1), load_avg_before=round(load_before, 2),
                  load_avg_after=round(os.getloadavg()[0], 2))
    return report


def add_quality_and_ratios(results: dict[str, dict], work: Path) -> None:
    from ldm_cli.pipeline.codec.quality import psnr, ssim

    base = results.get("ldm-auto", {}).get("step_s")
    fp32_key = next((k for k, r in results.items() if k.startswith("ldm") and r.get("dtype") == "fp32"), None)

    def compare(key: str, reference: str | None) -> dict | None:
        if reference is None or "error" in results.get(reference, {"error": 1}) or "error" in results[key]:
            return None
        a, b = np.load(work / f"{key}.npy"), np.load(work / f"{reference}.npy")
        return {"against": reference, "psnr_db": round(min(psnr(a, b), 99.0), 2), "ssim": round(ssim(a, b), 4)}

    for key, report in results.items():
        if "error" in report:
            continue
        if base:
            report["speed_vs_ldm_default"] = round(base / report["step_s"], 3)
        if key.startswith("sdcpp"):
            report["quality"] = {"against_ldm_fp32": "different RNG (sd.cpp draws its own noise)"}
            if key != "sdcpp-f32":
                report["quality"].update(compare(key, "sdcpp-f32" if "sdcpp-f32" in results else None) or {})
        elif key != fp32_key:
            report["quality"] = compare(key, fp32_key)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"SD1.5 architecture with random weights, {report['size']}x{report['size']}, guidance 7.5 (CFG), "
             f"{report['threads']} threads; s/step = (t(6 steps) - t(2 steps)) / 4 inside each process. "
             f"CPU: {m['cpu']} (avx512_bf16: {m['avx512_bf16']}, amx_bf16: {m['amx_bf16']}); load average "
             f"{m['load_avg_start']} at the start, {m['load_avg_end']} at the end.", "",
             "| row | s/step | speed vs ldm default | picture vs ldm fp32 (6 steps) | load avg during |",
             "|---|---|---|---|---|"]
    for row in report["rows"]:
        r = report["results"][row["key"]]
        if "error" in r:
            lines.append(f"| {row['label']} | not measured: {r['error']} | - | - | - |")
            continue
        label = row["label"] + (f" ({r['precision_hint']})" if "precision_hint" in r and "default" in row["key"] else "")
        q = r.get("quality")
        if q is None:
            quality = "reference" if r.get("dtype") == "fp32" else "-"
        elif "against_ldm_fp32" in q:
            quality = q["against_ldm_fp32"] + (f"; vs sd.cpp f32: {q['psnr_db']} dB, SSIM {q['ssim']}" if "psnr_db" in q else "")
        else:
            quality = f"PSNR {q['psnr_db']} dB, SSIM {q['ssim']}"
        lines.append(f"| {label} | {r['step_s']:.2f} | {r.get('speed_vs_ldm_default', '-')}x | {quality} | "
                     f"{r['load_avg_before']}-{r['load_avg_after']} |")
    lines += [""] + [f"{k}: {v}" for k, v in report["peers"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    from benchmarks.deepcache import cpu_name

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="256 px and sd.cpp f32 only (about 10 minutes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peers", default="ldm,openvino,sdcpp", help="which rows to run")
    parser.add_argument("--sdcpp-types", default="f32", help="comma-separated: f32, f16, q8_0, bf16")
    parser.add_argument("--rows", help="only these row keys, in this order (e.g. openvino-default,ldm-auto)")
    parser.add_argument("--out", help="results file stem (default: peers, or peers-<size> at other sizes)")
    parser.add_argument("--row-timeout", type=int, default=1800, help="seconds before a row is given up")
    args = parser.parse_args()
    if args.quick:
        args.size, args.sdcpp_types = 256, "f32"
    flags = Path("/proc/cpuinfo").read_text()
    family = next((line.split(":")[1].strip() for line in flags.splitlines() if line.startswith("cpu family")), "?")
    machine = {"cpu": cpu_name(), "cpu_family": family, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
               "cores": os.cpu_count(), "load_avg_start": round(os.getloadavg()[0], 2)}
    folder, checkpoint, work = prepare(args.size, args.seed)
    VENVS.mkdir(exist_ok=True)
    pythons, notes = {"ldm": Path(sys.executable)}, {}
    for row in rows(args, folder, checkpoint):
        if row["peer"] not in pythons and row["peer"] not in notes:
            python, notes[row["peer"]] = ensure(PEERS[row["peer"]], VENVS / f"{row['peer']}-install.log")
            if python:
                pythons[row["peer"]] = python
            print(f"peers: {row['peer']}: {notes[row['peer']]}", flush=True)
    results = {}
    for row in rows(args, folder, checkpoint):
        if row["peer"] not in pythons:
            results[row["key"]] = {"error": notes[row["peer"]]}
        else:
            results[row["key"]] = run_row(row, pythons[row["peer"]], args, work)
        print(f"peers: {row['key']}: {json.dumps(results[row['key']])}", flush=True)
    add_quality_and_ratios(results, work)
    machine["load_avg_end"] = round(os.getloadavg()[0], 2)
    report = {"machine": machine, "size": args.size, "threads": args.threads, "seed": args.seed,
              "peers": notes, "rows": [{k: r[k] for k in ("key", "label", "peer")} for r in rows(args, folder, checkpoint)],
              "results": results}
    stem = args.out or ("peers" if args.size == 512 else f"peers-{args.size}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(report))
    print(markdown(report), flush=True)


if __name__ == "__main__":
    main()
