"""The UNet compiled by OpenVINO (`--backend openvino`), called exactly like diffusers' UNet.

    first call of a shape   torch UNet (LoRAs merged, SDPA) --openvino.convert_model--> IR (xml + bin)
                            written to $LDM_CACHE_DIR/openvino/<key>/, then compiled for the CPU
    later calls, processes  the cached IR is read and compiled: no export

Shapes are static (OpenVINO's CPU plugin is fastest so, and diffusers' UNet traces shape-dependent
branches such as its upsample sizes), so each input shape set (batch with or without CFG, latent
size, prompt length in 77-token chunks) is its own IR. The key also holds the UNet's weight hash
(the one the image metadata records), the LoRA files and scales merged into it, the precision, and
the openvino/diffusers versions that made the graph. The IR keeps the torch UNet's weights as they
are: bf16 for a bf16 run (what OpenVINO computes with anyway, half the disk), f32 for f32. Its
inputs and output are f32 either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from ldm_cli.errors import ModelError, OutputError, as_os_error, one_line, os_cause
from ldm_cli.files.hashing import cache_dir, sha256_files
from ldm_cli.files.images import process_alive

FORMAT = 1  # bump when what is exported changes
EXPORT_PREFIX = ".export-"


def openvino_cache_dir() -> Path:
    """Where --backend openvino keeps its exported UNets: $LDM_CACHE_DIR/openvino."""
    return cache_dir() / "openvino"


class OpenVinoUNet:
    """Stands in for components.unet: __call__ runs OpenVINO, every other attribute (config, dtype,
    in_channels ...) is the torch UNet's, so the loop, guidance and inpainting read it unchanged."""

    def __init__(self, unet, identity: dict, precision: str, reason: str = "", log=print, threads: int | None = None):
        self.unet = unet
        self.identity = identity  # weights, LoRAs, versions: the shape-free part of the cache key
        self.precision = precision  # asked for (and part of the cache key)
        self.ran = None  # what the compiled model reports it runs at
        self.reason = reason
        self.log = log
        self.threads = threads or torch.get_num_threads()
        self.compiled: dict[tuple, object] = {}
        self.exports = 0  # exports this process made, and the time spent (benchmarks read them)
        self.export_seconds = 0.0
        self.compile_seconds = 0.0  # reading and compiling IRs

    def __getattr__(self, name):  # only called for what the stand-in does not define itself
        unet = self.__dict__.get("unet")
        if unet is None:  # copy/pickle probe a bare instance before __init__
            raise AttributeError(name)
        return getattr(unet, name)

    def __call__(self, sample, timestep, encoder_hidden_states=None, return_dict=False, timestep_cond=None, **unused):
        assert not unused, f"the OpenVINO UNet takes no {sorted(unused)}"  # sampling.predict_noise passes none
        inputs = [sample.float(), torch.as_tensor(timestep, dtype=torch.float32), encoder_hidden_states.float()]
        if timestep_cond is not None:
            inputs.append(timestep_cond.float())
        shapes = tuple(tuple(x.shape) for x in inputs)
        if shapes not in self.compiled:
            self.compiled[shapes] = self._load(shapes, inputs)
        result = self.compiled[shapes].infer([x.contiguous().numpy() for x in inputs])
        return (torch.from_numpy(result[0].copy()).to(sample.dtype),)

    def backend_record(self) -> dict:
        """What the image metadata says about the backend."""
        import openvino

        ran = self.ran or self.precision
        reason = self.reason if ran == self.precision else f"{self.reason}; this CPU ran {ran} instead of {self.precision}"
        return {"name": "openvino", "version": openvino.__version__.split("-")[0], "precision": ran,
                "precision_reason": reason}

    def _load(self, shapes, inputs):
        import openvino

        key = {**self.identity, "inputs": [list(s) for s in shapes], "precision": self.precision}
        folder = openvino_cache_dir() / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        xml = folder / "unet.xml"
        if not xml.exists():
            self.log(f"openvino: exporting the UNet for inputs {_shape_text(shapes)} at {self.precision} "
                     f"(once, cached in {folder})")
            started = time.perf_counter()
            export(self.unet, inputs, folder, key)
            self.exports += 1
            self.export_seconds += time.perf_counter() - started
        else:
            self.log(f"openvino: using the cached UNet export {folder}")
        core = openvino.Core()
        config = {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": self.threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        started = time.perf_counter()
        try:
            compiled = core.compile_model(core.read_model(xml), "CPU", config)
            self.compile_seconds += time.perf_counter() - started
            ran = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # bf16 without native support: f32
            if ran != self.precision and self.ran is None:
                self.log(f"openvino: this CPU runs the UNet at {ran}, not {self.precision}")
            self.ran = ran
            return compiled.create_infer_request()
        except RuntimeError as exc:  # a cached IR damaged after it was written (a cut copy, a bad disk)
            raise ModelError(f"the cached OpenVINO export {folder} cannot be read ({one_line(exc)[:200]}); "
                             "delete that folder and run again to export it afresh") from None


def export(unet, inputs, folder: Path, key: dict) -> None:
    """Trace `unet` at these static input shapes into `folder` atomically: written into a temporary
    folder beside it and renamed, so a killed export leaves no half-written IR under the key."""
    import openvino

    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_exports(folder.parent)
    tmp = folder.parent / f"{EXPORT_PREFIX}{os.getpid()}-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        specs = [(openvino.PartialShape(list(x.shape)), openvino.Type.f32) for x in inputs]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent branches: shapes are static here
            model = openvino.convert_model(_Forward(unet, len(inputs) == 4), example_input=tuple(inputs), input=specs)
        try:
            openvino.save_model(model, tmp / "unet.xml", compress_to_fp16=False)  # keep the weights' own dtype
            (tmp / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1))
        except (OSError, RuntimeError) as exc:  # openvino reports a full disk as a RuntimeError
            cause = as_os_error(exc)
            raise OutputError(f"cannot write the OpenVINO export to {folder}: "
                              f"{os_cause(cause) if cause else one_line(exc)}; free some space or point "
                              "LDM_CACHE_DIR at another disk") from None
        del model
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "unet.xml").exists():  # not another process that finished the same export first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_exports(root: Path) -> None:
    """Delete the temporary folders of exports whose process is gone (killed mid-export)."""
    for part in root.glob(f"{EXPORT_PREFIX}*-*"):
        pid = part.name[len(EXPORT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(part, ignore_errors=True)


class _Forward(torch.nn.Module):
    """The UNet as a function of f32 tensors returning one f32 tensor (what convert_model traces);
    the casts to the weights' dtype become part of the graph."""

    def __init__(self, unet, with_timestep_cond: bool):
        super().__init__()
        self.unet = unet
        self.with_timestep_cond = with_timestep_cond

    def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None):
        dtype = self.unet.dtype
        extra = {"timestep_cond": timestep_cond.to(dtype)} if self.with_timestep_cond else {}
        out = self.unet(sample.to(dtype), timestep, encoder_hidden_states=encoder_hidden_states.to(dtype),
                        return_dict=False, **extra)[0]
        return out.float()


def unet_identity(components, loras) -> dict:
    """The shape-free part of the cache key: which weights (as the metadata hashes them), which LoRAs
    at which scales, and the versions that trace the graph."""
    import diffusers
    import openvino

    files = components.weight_files.get("unet") or components.weight_files.get("checkpoint") or []
    weights = sha256_files(files) if files else _state_hash(components.unet)
    return {
        "format": FORMAT, "openvino": openvino.__version__, "diffusers": diffusers.__version__, "torch": torch.__version__,
        "weights": weights, "ema": bool(components.ema),
        "loras": [[sha256_files([spec.path]), spec.scale, spec.unet_scale] for spec in loras],
    }


def _state_hash(unet) -> str:
    """Weights with no file behind them: hash the tensors themselves."""
    digest = hashlib.sha256()
    for name, tensor in unet.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _shape_text(shapes) -> str:
    return ", ".join("x".join(str(d) for d in s) or "scalar" for s in shapes)


def use_openvino(components, loras, precision: str, reason: str = "", log=print) -> OpenVinoUNet:
    """Swap components.unet for its OpenVINO stand-in (after LoRA merges: the export sees final weights)."""
    components.unet.eval()
    ov_unet = OpenVinoUNet(components.unet, unet_identity(components, loras), precision, reason, log)
    components.unet = ov_unet
    return ov_unet
