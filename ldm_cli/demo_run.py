"""`make demo`: generate one picture with the bundled demo model.

Until the demo model is bundled, fall back to a tiny random-weight model so the command still
exercises the whole pipeline (and says plainly that its picture is noise).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ldm_cli.cli import main as ldm_main
from ldm_cli.models.loading import BUNDLED_MODELS

PROMPT = "a red circle on a blue background"


def main() -> None:
    # Any seed would do; a fixed one makes the README picture reproducible.
    args = ["generate", PROMPT, "--seed", "17", "--out", "outputs/demo.png"]
    if (BUNDLED_MODELS["demo"] / "model_index.json").exists():
        ldm_main([*args, "--model", "demo", "--steps", "30"])
        return
    from ldm_cli.tiny import build_tiny_model

    print("the demo model is not bundled yet: using a tiny random-weight model (its picture is noise)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_model(Path(folder) / "tiny")
        ldm_main([*args, "--model", str(model), "--steps", "10"])


if __name__ == "__main__":
    main()
