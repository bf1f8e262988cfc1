"""Load a resolved --model's components (tokenizer, text encoder, VAE, UNet, scheduler config).

Where --model comes from: models/sources.py (resolve_source and the model constants are imported
here too, so a caller that resolves and loads needs one import). Which weight files of a folder are
read: models/variants.py; a folder's required files: models/folder_layout.py; single files:
models/single_file.py; --vae: models/vae_override.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldm_cli.errors import ModelError
from ldm_cli.models import single_file
from ldm_cli.models.folder_layout import check_folder_layout, read_scheduler_config
from ldm_cli.models.load_errors import guarded_load
# Every caller that loads resolves first, so the names of sources.py are importable from here as well.
from ldm_cli.models.sources import (  # noqa: F401
    ASSETS, BUNDLED_MODELS, SD15_CONFIG_DIR, ModelSource, locate_hub_snapshot, resolve_source,
)
from ldm_cli.models.variants import choose_weights, has_variant

WEIGHT_COMPONENTS = ("text_encoder", "vae", "unet")


@dataclass
class Components:
    """The loaded parts of an SD1-family model, plus what provenance needs."""

    source: ModelSource
    tokenizer: object
    text_encoder: object
    vae: object
    unet: object
    scheduler_config: dict
    weight_files: dict[str, list[Path]] = field(default_factory=dict)
    vae_source: object | None = None  # a VaeSource when --vae replaced the model's own VAE
    variant: str | None = None  # the --variant asked for (each component's files: weight_files)
    ema: bool = False  # a single file's EMA UNet weights were used

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        return self.unet.config.sample_size * self.vae_scale_factor


def load_components(
    source: ModelSource,
    device: str = "cpu",
    dtype=None,
    *,
    offline: bool = False,
    allow_pickle: bool = False,
    single_file_config: Path | None = None,
    variant: str | None = None,
    vae: str | None = None,
    ema: bool = False,
) -> Components:
    """Load tokenizer, text encoder, VAE, UNet and the scheduler config, ready for inference.

    variant: which weight files of a folder (None: the default ones); vae: a --vae replacing the model's
    own VAE; ema: a single file's model_ema.* UNet weights instead of its normal ones.
    """
    import torch

    from ldm_cli.models.vae_override import resolve_vae_source

    quiet_library_logs()
    dtype = dtype or torch.float32
    vae_source = resolve_vae_source(vae) if vae else None
    if source.kind == "hub":
        source = locate_hub_snapshot(source, offline, allow_pickle, variant)
    if source.kind == "single-file":
        if variant:
            raise ModelError(f"--variant {variant}: {source.path.name} is a single file, which has no variants; drop --variant")
        config_dir = single_file_config or SD15_CONFIG_DIR
        components = _load_single_file(source, dtype, allow_pickle, config_dir, ema, with_vae=vae_source is None)
    else:
        if ema:
            raise ModelError(
                f"--ema: {source.spec} is a diffusers folder, whose unet/ holds one set of weights (official "
                "releases store the EMA ones as the default and the others as --variant non_ema); drop --ema"
            )
        config_dir = source.path
        components = _load_folder(source, dtype, allow_pickle, variant)
    if vae_source is not None:
        from ldm_cli.models.vae_override import load_vae_override

        components.vae, components.weight_files["vae"] = load_vae_override(
            vae_source, dtype, config_root=config_dir, offline=offline, allow_pickle=allow_pickle
        )
        components.vae_source = vae_source
    components.variant, components.ema = variant, ema
    for model in (components.text_encoder, components.vae, components.unet):
        model.to(device).eval().requires_grad_(False)
    return components


def quiet_library_logs() -> None:
    """Our own progress and messages are enough; silence the libraries' advisory chatter and bars."""
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def _load_folder(source: ModelSource, dtype, allow_pickle: bool, variant: str | None = None) -> Components:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = source.path
    check_folder_layout(folder)
    if variant and not any(has_variant(folder / c, variant) for c in WEIGHT_COMPONENTS):
        raise ModelError(
            f"--variant {variant}: {folder} has no {variant} weights (no *.{variant}.safetensors in "
            f"{', '.join(WEIGHT_COMPONENTS)}); drop --variant to load its default weights"
        )
    # Per component: the asked variant where it exists, else the default weights; safetensors before pickle.
    choices = {c: choose_weights(folder / c, variant, allow_pickle) for c in WEIGHT_COMPONENTS}
    loaders = {
        "text_encoder": lambda: CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", dtype=dtype, **choices["text_encoder"].loader_kwargs
        ),
        "vae": lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=dtype, **choices["vae"].loader_kwargs),
        "unet": lambda: UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", dtype=dtype, **choices["unet"].loader_kwargs
        ),
    }
    models = {name: guarded_load(name, folder / name, load) for name, load in loaders.items()}
    tokenizer = guarded_load("tokenizer", folder / "tokenizer", lambda: CLIPTokenizer.from_pretrained(folder / "tokenizer"))
    return Components(
        source=source,
        tokenizer=tokenizer,
        scheduler_config=read_scheduler_config(folder),
        weight_files={c: list(choice.files) for c, choice in choices.items()},  # only the files read: the hashes
        **models,
    )


def _load_single_file(source: ModelSource, dtype, allow_pickle: bool, config_dir: Path, ema: bool = False,
                      with_vae: bool = True) -> Components:
    from transformers import CLIPTokenizer

    from ldm_cli.models.inpaint_detect import single_file_unet

    path = source.path
    single_file.check_before_reading(path, allow_pickle, vae_given=not with_vae)
    state = single_file.read_state_dict(path, allow_pickle)
    if path.suffix != ".safetensors":  # a pickle was only classified now
        single_file.refuse_other_kinds(path, single_file.classify_keys(state), vae_given=not with_vae)
    state = single_file.fix_old_names(state)
    if ema:
        state = single_file.use_ema(state, path.name)
    hint = f"re-download it, or pass --config with its component configs (used: {config_dir})"
    def load_parts():  # a 9-channel inpainting UNet needs a config of its own
        unet = single_file_unet(path, config_dir, dtype, state).get("unet")
        return single_file.load_sd1_parts(state, config_dir, dtype, with_vae, unet=unet)

    parts = guarded_load("checkpoint", path, load_parts, hint=hint)
    tokenizer = guarded_load("tokenizer", config_dir / "tokenizer", lambda: CLIPTokenizer.from_pretrained(config_dir / "tokenizer"))
    return Components(
        source=source,
        tokenizer=tokenizer,
        text_encoder=parts["text_encoder"],
        vae=parts.get("vae"),
        unet=parts["unet"],
        scheduler_config=read_scheduler_config(config_dir),
        weight_files={"checkpoint": [path]},
    )
