"""Full disks, read-only places, a full stdout, a cache path that is a file, an unwritable HOME."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import assert_clean_failure, assert_untouched, fill, ldm, mounted, partial_files, snapshot


def test_generate_encode_decode_on_a_full_disk(tmp_path, tiny_model, good_png):
    import torch

    from ldm_cli.files.latent_files import LatentHeader, save_latents

    latents = save_latents(torch.zeros(1, 4, 8, 8), LatentHeader(0.18215, "mean", str(tiny_model), ""),
                           tmp_path / "photo.latent.safetensors")
    with mounted("tmpfs", tmp_path / "full", size_kb=64) as full:
        fill(full, leave_kb=4)
        (full / "earlier.png").write_bytes(good_png.read_bytes()[:3000])  # a file that was there before
        before = snapshot(full)
        commands = [
            ("generate", "a red circle", "--model", tiny_model, "--steps", "1", "--seed", "1", "-o", full),
            ("encode", good_png, "--model", tiny_model, "-o", full),
            ("decode", latents, "--model", tiny_model, "-o", full / "out.png"),
        ]
        for command in commands:
            result = ldm(*command, cwd=tmp_path)
            assert_clean_failure(result, 1, f"cannot write {full}/", "no space left")
            assert_untouched(before, full)


def test_stdout_to_dev_full(tmp_path, good_png):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", "a cat\nSteps: 2, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 64x64")
    Image.open(good_png).save(tmp_path / "made.png", pnginfo=info)
    with open("/dev/full", "w") as full:
        result = ldm("info", tmp_path / "made.png", cwd=tmp_path, stdout=full)
        assert_clean_failure(result, 1, "cannot write to standard output", "no space left")


def test_read_only_output_folder(tmp_path, tiny_model, good_png):
    """As root chmod does not stop writes; a read-only bind mount does."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "kept.txt").write_text("mine")
    with mounted("ro", tmp_path / "ro") as ro:
        before = snapshot(ro)
        result = ldm("generate", "a red circle", "--model", tiny_model, "--steps", "1", "-o", ro, cwd=tmp_path)
        assert_clean_failure(result, 2, f"--out {ro}", "not writable")  # checked before the model loads
        result = ldm("encode", good_png, "--model", tiny_model, "-o", ro, cwd=tmp_path)
        assert_clean_failure(result, 1, f"cannot write {ro}/photo.latent.safetensors", "read-only")
        assert_untouched(before, ro)


def test_a_cache_that_is_a_file_is_one_warning(tmp_path):
    """The latent cache only saves time: a cache we cannot write is one warning, and the run goes on."""
    import torch

    from ldm_cli.training.cache import TensorCache

    (tmp_path / "cache-file").write_text("not a folder")
    warnings = []
    cache = TensorCache(tmp_path / "cache-file" / "finetune", warn=warnings.append)
    for key in ("aa11", "bb22"):
        assert cache.get_or_compute(key, lambda: torch.ones(2)).tolist() == [1.0, 1.0]
    assert len(warnings) == 1 and "cannot write the cache in" in warnings[0] and "not a folder" in warnings[0]
    assert (tmp_path / "cache-file").read_text() == "not a folder"


def test_finetune_with_a_read_only_home(tmp_path, tiny_model, shapes_data):
    (tmp_path / "home").mkdir()
    with mounted("ro", tmp_path / "home") as home:
        result = ldm("finetune", shapes_data, "--model", tiny_model, "--max-steps", "1", "--rank", "4",
                     "--validation-steps", "1", "-o", tmp_path / "run", cwd=tmp_path,
                     HOME=home, LDM_CACHE_DIR=None, XDG_CACHE_HOME=None)
        assert result.code == 0, result.stderr[-2000:]
        assert "warning: cannot write the cache" in result.stderr and "read-only" in result.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"


def test_finetune_on_a_full_disk_leaves_no_half_checkpoint(tmp_path, tiny_model, shapes_data):
    with mounted("tmpfs", tmp_path / "full", size_kb=96) as full:
        args = ("finetune", shapes_data, "--model", tiny_model, "-o", full / "run", "--max-steps", "2",
                "--checkpoint-every", "1", "--rank", "4", "--validation-steps", "1")
        result = ldm(*args, cwd=tmp_path)
        assert_clean_failure(result, 1, f"cannot write {full}/run/checkpoints/checkpoint-000001", "no space left")
        assert not partial_files(full)
        record = json.loads((full / "run" / "run.json").read_text())
        assert record["status"] == "failed" and "no space left" in record["error"]
        # a plain re-run is not refused (nothing to lose): test_finetune_faults checks that without a disk


def test_mount_helper_really_refuses_writes_as_this_user(tmp_path):
    """Guard for the tests above: the read-only mount must stop this user (root too)."""
    (tmp_path / "ro").mkdir()
    with mounted("ro", tmp_path / "ro") as ro:
        probe = subprocess.run([sys.executable, "-c", f"open({str(ro / 'x')!r}, 'w')"], capture_output=True, text=True)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr
