"""Fast paths keep parity with diffusers' StableDiffusionPipeline within the precision's tolerance,
and `ldm generate --dry-run` plans without loading weights. Speed itself is measured in benchmarks/."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ldm_cli.reference import reference_pipeline
from ldm_cli.pipeline.generation import SamplingPlan, TextToImage
from ldm_cli.models.loading import load_components, resolve_source
from ldm_cli.models.performance import PerformanceSettings, apply_fast_paths, use_classic_attention

PROMPT, SEED, STEPS = "a red circle on a blue background", 42, 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions on a shared 2-core machine: a 2-thread OpenMP team mostly waits for the busy
    second core (see benchmarks/models.py), so these tests run on one thread, and restore it after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fresh(tiny_model, dtype=torch.float32):
    """Fast paths change the components in place, so every comparison loads its own copy."""
    return load_components(resolve_source(str(tiny_model)), "cpu", dtype)


def reference(components, size=64, guidance=7.5, scheduler="ddim"):
    pipe = reference_pipeline(components, scheduler)
    out = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=guidance, height=size, width=size,
               generator=torch.Generator().manual_seed(SEED), output_type="np")
    return out.images[0]


def ours(components, size=64, guidance=7.5, scheduler="ddim", dtype=torch.float32):
    plan = SamplingPlan(size, size, STEPS, guidance, scheduler)
    image = TextToImage(components, "cpu", dtype).generate(PROMPT, SEED, plan).image
    return image[0].permute(1, 2, 0).float().numpy()


@pytest.fixture(scope="module")
def fp32_reference(tiny_model):
    """diffusers' own default: float32, its default attention processor, contiguous memory."""
    return reference(fresh(tiny_model))


@pytest.mark.parametrize(
    "perf",
    [PerformanceSettings(), PerformanceSettings(channels_last=True), PerformanceSettings(offload=True)],
    ids=["sdpa", "channels-last", "offload-hooks"],
)
def test_fast_path_matches_reference_fp32(tiny_model, fp32_reference, perf):
    components = fresh(tiny_model)
    apply_fast_paths(components, "cpu", perf)  # offload on the CPU: accelerate's hooks, execution device cpu
    assert np.abs(ours(components) - fp32_reference).max() <= 1e-4
    if perf.channels_last:
        conv = components.unet.conv_in.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    if perf.offload:
        assert hasattr(components.unet, "_hf_hook")


def test_sdpa_equals_classic_attention(tiny_model, fp32_reference):
    """SDPA and the explicit softmax(QK^T)V are the same maths; only memory and speed differ."""
    components = fresh(tiny_model)
    use_classic_attention(components.unet, components.vae)
    classic = ours(components)
    assert type(next(iter(components.unet.attn_processors.values()))).__name__ == "AttnProcessor"
    assert np.abs(classic - fp32_reference).max() <= 1e-4


def test_bf16_matches_reference_in_bf16_and_fp32_structure(tiny_model, fp32_reference):
    ref_bf16 = reference(fresh(tiny_model, torch.bfloat16))
    mine = ours(fresh(tiny_model, torch.bfloat16), dtype=torch.bfloat16)
    assert np.abs(mine - ref_bf16).max() <= 1e-2  # same precision, same operations
    mse = float(np.mean((mine - fp32_reference) ** 2))
    assert 0 < mse and 10 * np.log10(1 / mse) > 30  # bf16 is not fp32, but the picture is the same


def test_vae_tiling_matches_reference_tiling(tiny_model):
    """At 128 px the tiny VAE (64 px tiles) decodes in 4 overlapping tiles, exactly as diffusers' tiled VAE."""
    reference_components = fresh(tiny_model)
    reference_components.vae.enable_tiling()
    ref = reference(reference_components, size=128)
    components = fresh(tiny_model)
    apply_fast_paths(components, "cpu", PerformanceSettings(vae_tiling=True))
    tiled = ours(components, size=128)
    assert np.abs(tiled - ref).max() <= 1e-4
    untiled = ours(fresh(tiny_model), size=128)
    assert np.abs(tiled - untiled).max() > 1e-3  # tiling really happened (seams are blended, not identical)


def test_compiled_unet_matches_reference(tiny_model, fp32_reference):
    """The UNet captured by torch.compile (TorchDynamo graphs + AOTAutograd) still gives the reference
    picture. The default inductor backend adds minutes of C++ compilation on 2 cores, so its parity
    is checked by the benchmark instead (benchmarks/results: compile max_abs_diff)."""
    from ldm_cli.models.performance import compile_unet

    components = fresh(tiny_model)
    compile_unet(components.unet, backend="aot_eager")
    assert components.unet._compiled_call_impl is not None
    assert np.abs(ours(components) - fp32_reference).max() <= 1e-4


def test_compile_keeps_inductor_artefacts_in_ldm_cache(tiny_model, monkeypatch, tmp_path):
    """--compile points inductor's FX graph / AOTAutograd caches at $LDM_CACHE_DIR/inductor (they
    survive a reboot there, unlike /tmp), and leaves a TORCHINDUCTOR_CACHE_DIR the user set alone."""
    import os

    from ldm_cli.models.performance import compile_unet

    monkeypatch.setenv("LDM_CACHE_DIR", str(tmp_path / "ldm-cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    compile_unet(fresh(tiny_model).unet, backend="aot_eager")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "ldm-cache" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    compile_unet(fresh(tiny_model).unet, backend="aot_eager")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


@pytest.mark.parametrize("guidance, calls, batch", [(7.5, STEPS, 2), (1.0, STEPS, 1)])
def test_one_batched_unet_call_per_step_and_no_uncond_pass_without_guidance(tiny_model, guidance, calls, batch):
    components = fresh(tiny_model)
    seen = []
    components.unet.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    ours(components, guidance=guidance)
    assert seen == [batch] * calls


def test_dry_run_prints_plan_and_loads_no_weights(ldm, tiny_model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    for weights in broken.glob("*/*.safetensors"):
        weights.write_bytes(b"not weights")  # a real run would fail to load these
    result = ldm("generate", "a cat", "--model", broken, "--dim", "128", "--steps", "3", "--seed", "5", "--dry-run")
    assert result.code == 0, result.stderr
    assert "latent_shape:    [1, 4, 16, 16]" in result.stdout
    assert "height:          128" in result.stdout and "scheduler:       pndm" in result.stdout
    assert "peak on cpu" in result.stdout
    assert not (tmp_path / "outputs").exists()
    assert ldm("generate", "a cat", "--model", broken, "--steps", "3").code != 0  # the weights really are broken


def test_dry_run_json_memory_grows_with_size_and_guidance(ldm, tiny_model):
    def plan(*extra):
        result = ldm("generate", "a cat", "--model", tiny_model, "--dry-run", "--json", *extra)
        assert result.code == 0, result.stderr
        return json.loads(result.stdout)

    small, large, unguided = plan("--dim", "64"), plan("--dim", "512"), plan("--dim", "512", "--g", "1")
    assert small["latent_shape"] == [1, 4, 8, 8] and large["latent_shape"] == [1, 4, 64, 64]
    assert large["memory"]["peak_bytes"] > small["memory"]["peak_bytes"]
    assert large["unet_batch"] == 2 and unguided["unet_batch"] == 1
    params = large["memory"]["parameters"]
    assert params["unet"] == sum(p.numel() for p in fresh(tiny_model).unet.parameters())
    tiled = plan("--dim", "512", "--vae-tiling")
    assert tiled["memory"]["parts"]["activations"] < large["memory"]["parts"]["activations"]
    assert tiled["fast_paths"] == ["sdpa", "vae_tiling"]


def test_dry_run_estimates_sd15_from_bundled_configs(ldm):
    result = ldm("generate", "a cat", "--model", "stabilityai/not-cached-here", "--dry-run", "--json", "--offline")
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert "bundled SD1.5 configs" in plan["configs"]
    assert plan["latent_shape"] == [1, 4, 64, 64]
    assert 850e6 < plan["memory"]["parameters"]["unet"] < 870e6  # SD1.5's UNet has 860M parameters


def test_offload_needs_cuda_exits_2(ldm, tiny_model):
    for extra in ((), ("--dry-run",)):
        result = ldm("generate", "a cat", "--model", tiny_model, "--device", "cpu", "--offload", *extra)
        assert result.code == 2
        assert "--offload" in result.stderr and "--device cuda" in result.stderr
        assert "Traceback" not in result.stderr


def test_cli_fast_path_flags_give_the_same_picture(ldm, tiny_model, tmp_path):
    from PIL import Image

    base = ("generate", "a cat", "--model", tiny_model, "--steps", "2", "--seed", "9")
    assert ldm(*base, "--out", "plain.png").code == 0
    result = ldm(*base, "--out", "fast.png", "--channels-last", "--vae-tiling")
    assert result.code == 0, result.stderr
    plain, fast = (np.asarray(Image.open(tmp_path / name), dtype=int) for name in ("plain.png", "fast.png"))
    assert np.abs(plain - fast).max() <= 1  # 64 px fits one VAE tile; channels-last rounds differently at most


def test_committed_benchmark_results_render(tmp_path):
    """The committed results.json is complete enough to redraw the README table and the chart."""
    from pathlib import Path

    from benchmarks.report import table, write_chart

    results = json.loads((Path(__file__).parent.parent / "benchmarks" / "results" / "results.json").read_text())
    assert {"tiny", "sd15"} <= set(results["models"])
    sd15 = results["models"]["sd15"]
    assert sd15["fresh_process"]["max_pixel_diff"] == 0  # ldm and diffusers drew the same picture
    assert 1.5e12 < sd15["unet_flops_per_guided_step"] < 1.7e12  # ~1.6 TFLOP per guided SD1.5 step
    rows = [line for line in table(results).splitlines() if line.startswith(("| tiny", "| sd15", "| demo"))]
    assert len(rows) == len(results["models"])
    write_chart(results, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_time_to_image_results_render(tmp_path):
    """The committed time_to_image.json has every recipe with a quality figure (or says why not) and
    redraws the README table and the chart."""
    from pathlib import Path

    from benchmarks.time_to_image import NO_LCM, ROWS, write_chart, write_table

    report = json.loads((Path(__file__).parent.parent / "benchmarks" / "results" / "time_to_image.json").read_text())
    for part in ("demo", "sd15_random_weights"):
        rows = report[part]["rows"]
        assert {"diffusers-default-50", "ldm-dpm2m-20", "ldm-dpm2m-20-cache3", "ldm-lcm-4"} <= set(rows)
        for key, row in rows.items():
            assert row["seconds_per_image"] > 0
            if key != "diffusers-default-50" and row["scheduler"] != "lcm":
                assert "psnr_vs_50_step_db" in row  # quality measured against the 50-step picture
    lcm = report["demo"]["rows"]["ldm-lcm-4"]
    assert (lcm["adherence"] == NO_LCM) == (report["demo"]["lcm_weights"] is None)  # never a faked LCM figure
    write_table(report, tmp_path / "table.md")
    assert len([line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| ")]) - 1 == len(ROWS)
    write_chart(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bf16_on_a_cpu_without_native_bf16_warns(ldm, tiny_model):
    from ldm_cli.models.performance import cpu_has_native_bf16

    result = ldm("generate", "a cat", "--model", tiny_model, "--steps", "1", "--seed", "1", "--dtype", "bf16")
    assert result.code == 0, result.stderr
    assert ("no native bf16" in result.stderr) == (not cpu_has_native_bf16())
    fp32 = ldm("generate", "a cat", "--model", tiny_model, "--steps", "1", "--seed", "1", "--dtype", "fp32")
    assert "bf16" not in fp32.stderr
