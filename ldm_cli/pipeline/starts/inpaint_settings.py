"""Checks on the inpainting flags that need no file and no model (exit 2, one line each)."""

from __future__ import annotations

from ldm_cli.errors import UsageError

AREAS = ("whole", "masked")
MASKED_CONTENT = ("original", "fill")
OUTPAINT_FILLS = ("mean", "edge")
MAX_BLUR = 64
MAX_PADDING = 1024


def validate_inpaint(s) -> None:
    masked = s.mask is not None or s.outpaint is not None
    given = [flag for flag, value in (
        ("--mask-blur", s.mask_blur), ("--keep-unmasked/--no-keep-unmasked", s.keep_unmasked),
        ("--inpaint-area", s.inpaint_area), ("--inpaint-padding", s.inpaint_padding), ("--invert-mask", s.invert_mask),
        ("--masked-content", s.masked_content), ("--outpaint-fill", s.outpaint_fill),
    ) if value is not None]
    if not masked:
        if given:
            raise UsageError(f"{given[0]}: only used with --mask MASK or --outpaint L,T,R,B (and --init-image)")
        return
    flag = "--mask" if s.mask is not None else "--outpaint"
    if s.init_image is None:
        hint = "--init-latents cannot be masked; use the picture itself" if s.init_latents is not None else "pass the picture to repaint"
        raise UsageError(f"{flag} needs --init-image IMG ({hint})")
    if s.mask is not None:
        if not s.mask.exists():
            raise UsageError(f"--mask {s.mask}: no such file")
        if s.mask.is_dir():
            raise UsageError(f"--mask {s.mask}: is a folder; pass one image (white = repaint, black = keep)")
    if s.mask is None and s.invert_mask:
        raise UsageError("--invert-mask: only used with --mask MASK")
    if s.mask_blur is not None and not 0 <= s.mask_blur <= MAX_BLUR:
        raise UsageError(f"--mask-blur {s.mask_blur}: must be between 0 and {MAX_BLUR} pixels (4 is A1111's default)")
    if s.inpaint_padding is not None and not 0 <= s.inpaint_padding <= MAX_PADDING:
        raise UsageError(f"--inpaint-padding {s.inpaint_padding}: must be between 0 and {MAX_PADDING} pixels (default 32)")
    if s.inpaint_padding is not None and (s.inpaint_area or "whole") != "masked":
        raise UsageError(f"--inpaint-padding {s.inpaint_padding}: only used with --inpaint-area masked")
    _choice("--inpaint-area", s.inpaint_area, AREAS)
    _choice("--masked-content", s.masked_content, MASKED_CONTENT)
    _choice("--outpaint-fill", s.outpaint_fill, OUTPAINT_FILLS)
    if s.outpaint_fill is not None and s.outpaint is None:
        raise UsageError(f"--outpaint-fill {s.outpaint_fill}: only used with --outpaint L,T,R,B")
    if s.outpaint is not None:
        from ldm_cli.pipeline.starts.outpaint import parse_outpaint

        parse_outpaint(s.outpaint)


def _choice(flag: str, value, choices) -> None:
    if value is not None and value not in choices:
        raise UsageError(f"{flag} {value!r}: choose {' or '.join(choices)}")


def inpaint_from_record(inpaint: dict | None, img2img: dict | None = None) -> dict:
    """The inpainting flags an ldm record holds, for `--from` (the mask must still be where it was)."""
    from pathlib import Path

    if not inpaint:
        return {}
    values = {
        "mask": Path(inpaint["mask"]) if inpaint.get("mask") else None,
        "mask_blur": inpaint.get("mask_blur"),
        "keep_unmasked": inpaint.get("keep_unmasked"),
        "inpaint_area": inpaint.get("inpaint_area"),
        "inpaint_padding": inpaint.get("inpaint_padding") if inpaint.get("inpaint_area") == "masked" else None,
        "invert_mask": True if inpaint.get("invert_mask") else None,
        "masked_content": inpaint.get("masked_content"),
        "outpaint": ",".join(str(side) for side in inpaint["outpaint"]) if inpaint.get("outpaint") else None,
        "outpaint_fill": inpaint.get("outpaint_fill") if inpaint.get("outpaint") else None,
    }
    if inpaint.get("outpaint") and img2img and img2img.get("size"):
        values["width"], values["height"] = img2img["size"]  # the recorded Size is the grown canvas
    return values


def check_recorded_files(from_image, values: dict, explicit: dict) -> None:
    """`--from` an image made from files: they must still be where the record says."""
    from pathlib import Path

    for key, flag in (("init_image", "--init-image"), ("init_latents", "--init-latents"), ("mask", "--mask")):
        path = values.get(key)
        if path is not None and key not in explicit and not Path(path).exists():
            raise UsageError(f"--from {from_image}: it was made with {flag} {path}, which is no longer there; "
                             f"put the file back or pass {flag} FILE")


def inpaint_fields(inpaint: dict | None) -> dict:
    """The A1111 infotext fields of an inpainting image (A1111's names and values)."""
    if not inpaint:
        return {}
    masked = inpaint.get("inpaint_area") == "masked"
    return {
        "Mask blur": inpaint.get("mask_blur"),
        "Inpaint area": "Only masked" if masked else "Whole picture",
        "Masked area padding": inpaint.get("inpaint_padding") if masked else None,
        "Mask mode": "Inpaint not masked" if inpaint.get("invert_mask") else None,
        "Masked content": inpaint.get("masked_content"),
        "Outpaint": ",".join(str(side) for side in inpaint["outpaint"]) if inpaint.get("outpaint") else None,
    }
