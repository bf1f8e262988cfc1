"""One venv per peer under benchmarks/.venvs/<peer> (git-ignored), made and pip-installed on demand.

Versions are pinned (what resolved and ran here, Python 3.11). stable-diffusion-cpp-python has no
wheel on PyPI: pip builds it from source with cmake (about 5 minutes on 2 cores). A peer that cannot
be installed is reported in one line and skipped; the other rows still run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VENVS = Path(__file__).parent / ".venvs"


@dataclass(frozen=True)
class Peer:
    name: str
    pins: tuple[str, ...]
    drop: tuple[str, ...] = ()  # installed as a dependency but broken here, so removed again


PEERS = {
    "openvino": Peer("openvino", (
        "torch==2.13.0", "openvino==2026.4.1", "openvino-tokenizers==2026.4.1.0", "optimum==2.3.0",
        "optimum-intel[openvino,diffusers]==2.2.0", "diffusers==0.39.0", "transformers==5.5.4",
        "huggingface-hub==1.21.0", "nncf==3.4.0", "numpy==2.4.6"),
        # optimum-intel asks for torchvision, whose wheel here does not load with the CPU torch
        # ("operator torchvision::nms does not exist"); transformers runs without it.
        drop=("torchvision",)),
    "sdcpp": Peer("sdcpp", ("stable-diffusion-cpp-python==0.4.7", "numpy==2.4.6", "pillow==13.0.0")),
}


def venv_python(peer: Peer) -> Path:
    return VENVS / peer.name / "bin" / "python"


def ensure(peer: Peer, log: Path) -> tuple[Path | None, str]:
    """(the peer's python, a note): None and the reason in one line when it cannot be installed."""
    folder, stamp = VENVS / peer.name, VENVS / peer.name / ".pins"
    wanted = "\n".join(peer.pins + tuple(f"-{d}" for d in peer.drop)) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return venv_python(peer), "venv ready"
    started = time.perf_counter()
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    print(f"peers: installing {peer.name} into {folder} (pinned; logged to {log})", flush=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(folder)],
             [str(venv_python(peer)), "-m", "pip", "install", "-q", *peer.pins]]
    if peer.drop:
        steps.append([str(venv_python(peer)), "-m", "pip", "uninstall", "-y", "-q", *peer.drop])
    with open(log, "w") as out:
        for command in steps:
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode != 0:
                return None, f"could not install {peer.name} ({' '.join(command[2:5])}...): {_last_error(log)}"
    stamp.write_text(wanted)
    return venv_python(peer), f"installed in {time.perf_counter() - started:.0f} s"


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:200]
