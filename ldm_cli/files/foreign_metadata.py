"""Generation metadata other tools write outside a PNG `parameters` text chunk.

  A1111 JPEG / WebP   the infotext in EXIF UserComment (Exif IFD tag 0x9286), written by piexif as
                      b"UNICODE\\0" + UTF-16 big-endian text (some writers use little-endian)
  Fooocus             the `parameters` chunk (PNG) or UserComment (JPEG/WebP, IFD0) holds JSON when
                      its scheme (`fooocus_scheme` chunk / EXIF MakerNote) is "fooocus"; read here for
                      prompt, negative prompt, seed, steps, guidance, size, sampler, model hash, LoRAs
                      (Fooocus modules/meta_parser.py), and turned into an A1111 infotext
"""

from __future__ import annotations

import json
import re

from ldm_cli.files.metadata import a1111_parameters

EXIF_IFD, USER_COMMENT, MAKER_NOTE = 0x8769, 0x9286, 0x927C

# Fooocus' own sampler -> A1111 name table (modules/flags.py KSAMPLER + SAMPLER_EXTRA) and the samplers
# it never suffixes with " Karras" (CIVITAI_NO_KARRAS).
FOOOCUS_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "lcm": "LCM", "tcd": "TCD", "ddim": "DDIM", "uni_pc": "UniPC",
}
NO_KARRAS = {"euler", "euler_ancestral", "heun", "dpm_fast", "dpm_adaptive", "ddim", "uni_pc"}
# Fooocus settings that change the picture and that ldm does not reproduce.
FOOOCUS_UNREPLAYED = ("styles", "sharpness", "adm_guidance", "refiner_model", "freeu", "adaptive_cfg", "vae")
_NOTHING = (None, "", "None", "[]", [], "Disabled", "Default (model)", False)


def decode_user_comment(value) -> str | None:
    """EXIF UserComment -> text: an 8-byte charset prefix, then the text in that charset."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.rstrip("\0") or None
    data = bytes(value)
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body.decode("utf-16", errors="replace")
        else:  # piexif writes big-endian; tell little-endian by where the zero high bytes fall
            big = body[0::2].count(0) >= body[1::2].count(0)
            text = body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    elif prefix == b"ASCII\0\0\0":
        text = body.decode("ascii", errors="replace")
    elif prefix == b"JIS\0\0\0\0\0":
        text = body.decode("shift_jis", errors="replace")
    elif prefix == b"\0" * 8:
        text = body.decode("utf-8", errors="replace")
    else:
        text = data.decode("utf-8", errors="replace")
    return text.rstrip("\0") or None


def exif_text(image) -> tuple[str | None, str | None]:
    """(UserComment text, MakerNote text) from an image's EXIF: the Exif IFD first (A1111), then IFD0 (Fooocus)."""
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a damaged EXIF block only means no metadata from it
        return None, None
    comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT) if EXIF_IFD in exif else None
    comment = comment if comment is not None else exif.get(USER_COMMENT)
    maker = exif.get(MAKER_NOTE) or (exif.get_ifd(EXIF_IFD).get(MAKER_NOTE) if EXIF_IFD in exif else None)
    maker = maker.decode("utf-8", errors="replace").rstrip("\0") if isinstance(maker, bytes) else maker
    return decode_user_comment(comment), maker


def as_fooocus(text: str | None, scheme: str | None) -> dict | None:
    """Fooocus' JSON record, when `text` is one (its scheme says so, or it parses as a JSON object)."""
    if not text or scheme == "a1111" or not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and ("prompt" in data or "full_prompt" in data) else None


def fooocus_to_a1111(data: dict) -> str:
    """A Fooocus record as an A1111 infotext (what Fooocus' own A1111 scheme would write)."""
    prompt = str(data.get("prompt") or "") or ", ".join(data.get("full_prompt") or [])
    negative = str(data.get("negative_prompt") or "") or ", ".join(data.get("full_negative_prompt") or [])
    tags = [f"<lora:{name}:{weight}>" for name, weight, *_ in _fooocus_loras(data)]
    fields = {
        "Steps": data.get("steps"),
        "Sampler": _sampler(data.get("sampler"), data.get("scheduler")),
        "CFG scale": data.get("guidance_scale"),
        "Seed": data.get("seed"),
        "Size": _size(data.get("resolution")),
        "Model hash": (data.get("base_model_hash") or "")[:10] or None,
        "Model": data.get("base_model"),
        "Version": data.get("version"),
    }
    return a1111_parameters(" ".join([prompt, *tags]) if tags else prompt, negative, fields)


def fooocus_unreplayed(data: dict) -> list[str]:
    """The Fooocus settings in the record that would change the picture and that ldm ignores."""
    out = []
    for key in FOOOCUS_UNREPLAYED:
        value = data.get(key)
        if value in _NOTHING or (key == "sharpness" and str(value) in ("0", "0.0")):
            continue
        out.append(key)
    return out


def _fooocus_loras(data: dict) -> list[tuple]:
    loras = []
    for item in data.get("loras") or []:
        if isinstance(item, (list, tuple)) and len(item) >= 2 and item[0] not in ("None", ""):
            loras.append((str(item[0]).rsplit("/", 1)[-1].removesuffix(".safetensors"), item[1]))
    return loras


def _sampler(sampler, scheduler) -> str | None:
    name = FOOOCUS_SAMPLERS.get(str(sampler))
    if name and scheduler == "karras" and sampler not in NO_KARRAS:
        name += " Karras"
    return name


def _size(resolution) -> str | None:
    numbers = re.findall(r"\d+", str(resolution or ""))
    return f"{numbers[0]}x{numbers[1]}" if len(numbers) >= 2 else None
