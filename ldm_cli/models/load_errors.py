"""Library errors from loading a bad weight file, turned into one actionable line (a ModelError)."""

from __future__ import annotations

from pathlib import Path

from ldm_cli.errors import ModelError


def guarded_load(component: str, where: Path, load, hint: str = "re-download it"):
    """Run a loader and turn library errors about bad files into one actionable line."""
    try:
        return load()
    except ModelError:
        raise
    except Exception as exc:  # diffusers/transformers/safetensors raise many types for bad files
        if "shape" in str(exc) or "size mismatch" in str(exc):  # intact file, other architecture or config
            raise ModelError(
                f"could not load {component} from {where}: its tensor shapes do not fit the configs used "
                f"({_short(exc, 160)}) — {hint}"
            ) from None
        raise ModelError(
            f"could not load {component} from {where}: {_short(exc)}; the file may be truncated, corrupt or "
            f"for another architecture — {hint}"
        ) from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
