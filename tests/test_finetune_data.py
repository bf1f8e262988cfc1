"""`ldm finetune DATA --check`: both caption conventions, the bad-data report, --strict, buckets."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

from ldm_cli.training.batches import BatchPlan
from ldm_cli.training.buckets import bucket_sizes, nearest_bucket, prepare_pixels
from ldm_cli.training.data import scan


def _image(path, color, size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).ellipse((4, 4, size[0] - 4, size[1] - 4), fill=color)
    image.save(path)


@pytest.fixture
def messy(tmp_path):
    """Every convention and every kind of problem, once."""
    root = tmp_path / "data"
    _image(root / "a.png", "red")
    (root / "a.txt").write_text("a red circle\n")
    _image(root / "b.jpg", "blue")
    (root / "b.caption").write_text("a blue circle")
    _image(root / "hf" / "c.png", "green", (128, 64))
    _image(root / "hf" / "d.png", "orange")
    (root / "hf" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "c.png", "text": "a green circle"}) + "\n"
        + json.dumps({"file_name": "d.png", "text": ""}) + "\n"
        + json.dumps({"file_name": "gone.png", "text": "x"}) + "\n"
        + "{not json\n"
    )
    _image(root / "5_style" / "e.png", "purple")
    (root / "5_style" / "e.txt").write_text("word " * 90)
    _image(root / "copy.png", "red")  # the same bytes as a.png
    (root / "copy.txt").write_text("a copy")
    _image(root / "nocaption.png", "black")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    (root / "broken.txt").write_text("broken")
    _image(root / ".hidden" / "h.png", "red")
    return root


def test_check_reports_every_problem_and_keeps_good_items(ldm, messy):
    result = ldm("finetune", messy, "--check", "--resolution", "64")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images_found"] == 8 and report["images_used"] == 4
    used_sources = report["caption_sources"]
    assert used_sources["metadata.jsonl"] == 1 and used_sources[".caption"] == 1 and used_sources[".txt"] == 2
    assert report["samples_per_epoch"] == 3 + 5  # the kohya folder 5_style repeats its image 5 times
    why = {entry["path"]: entry["why"] for entry in report["left_out"]}
    assert "exact duplicate" in why["copy.png"]
    assert "missing caption" in why["nocaption.png"]
    assert "corrupt" in why["broken.png"] or "not an image" in why["broken.png"]
    assert "empty caption" in why["hf/d.png"]
    assert "no such image" in why["hf/gone.png"]
    assert "file_name" in why["hf/metadata.jsonl:4"]
    warnings = [(w["path"], w["what"]) for w in report["warnings"]]
    assert any(p == "5_style/e.png" and "longer than 77 tokens; cut: 'word word" in w for p, w in warnings)
    assert not any(".hidden" in p for p in why)
    assert "8 images found, 4 used" in result.stderr


def test_small_images_warned_and_aspect_spread(ldm, messy):
    result = ldm("finetune", messy, "--check", "--resolution", "256")
    report = json.loads(result.stdout)
    small = [w["path"] for w in report["warnings"] if "smaller than the training resolution" in w["what"]]
    assert sorted(small) == ["5_style/e.png", "a.png", "b.jpg", "hf/c.png"]
    assert report["aspect_buckets"] == {"1:1 (256x256)": 3, "5:3 (320x192)": 1}


def test_strict_aborts_on_any_finding(ldm, messy, tmp_path):
    result = ldm("finetune", messy, "--check", "--strict", "--resolution", "64")
    assert result.code == 1
    assert "--strict" in result.stderr and "Traceback" not in result.stderr
    clean = tmp_path / "clean"
    _image(clean / "x.png", "red")
    (clean / "x.txt").write_text("a red circle")
    assert ldm("finetune", clean, "--check", "--strict", "--resolution", "64").code == 0


def test_usage_errors_exit_2_with_the_fix(ldm, messy, tmp_path):
    cases = [
        (("finetune", tmp_path / "nope", "--check"), "no such folder"),
        (("finetune", messy, "--method", "dreambooth"), "choose one of lora, full"),
        (("finetune", messy, "--resolution", "100"), "multiple of 64"),
        (("finetune", messy, "--mixed-precision", "fp8"), "choose one of no, fp16, bf16"),
        (("finetune", messy, "--caption-dropout", "1.5"), "--caption-dropout"),
        (("finetune", messy, "--resume", tmp_path), "not a complete checkpoint"),
        (("finetune", messy, "--max-steps", "0"), "--max-steps 0"),
        # a flag only the other --method reads is refused, not silently unused
        (("finetune", messy, "--method", "full", "--rank", "8"), "--rank 8: only --method lora uses it"),
        (("finetune", messy, "--method", "full", "--lora-format", "kohya"), "--lora-format kohya: only --method lora"),
        (("finetune", messy, "--no-ema"), "--no-ema: only --method full uses it; drop it, or pass --method full"),
        (("finetune", messy, "--ema-decay", "0.99"), "--ema-decay 0.99: only --method full"),
    ]
    for args, message in cases:
        result = ldm(*args)
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr


def test_empty_folder_is_an_error(ldm, tmp_path):
    (tmp_path / "empty").mkdir()
    result = ldm("finetune", tmp_path / "empty", "--check")
    assert result.code == 1 and "no usable images" in result.stderr


def test_buckets_are_multiples_of_64_near_the_area():
    sizes = bucket_sizes(512)
    assert (512, 512) in sizes and (640, 384) in sizes and (384, 640) in sizes
    for width, height in sizes:
        assert width % 64 == 0 and height % 64 == 0 and width * height <= 512 * 512
        assert max(width / height, height / width) <= 2
    assert nearest_bucket(1200, 800, sizes) == (640, 384)  # 3:2 goes to the nearest ratio, 5:3
    assert nearest_bucket(800, 1200, sizes) == (384, 640)
    assert nearest_bucket(1000, 1000, sizes) == (512, 512)
    assert bucket_sizes(512, use_buckets=False) == [(512, 512)]


def test_crop_and_flip_transform():
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 20, 100))  # a red band on the left edge
    left = prepare_pixels(image, (64, 64), offset=(0.0, 0.5))
    centre = prepare_pixels(image, (64, 64))
    flipped = prepare_pixels(image, (64, 64), offset=(0.0, 0.5), flip=True)
    assert left.shape == (3, 64, 64) and left.min() >= -1 and left.max() <= 1
    assert left[1, 32, 0] < 0 < centre[1, 32, 0]  # the red band is kept only by the left crop
    assert flipped[1, 32, -1] < 0  # ... and mirrored to the right by the flip


def test_batches_are_deterministic_and_bucket_pure(tmp_path):
    for i in range(5):
        _image(tmp_path / f"s{i}.png", ("red", "blue", "green", "orange", "gray")[i], (64, 64) if i < 3 else (128, 64))
        (tmp_path / f"s{i}.txt").write_text(f"image {i}")
    items = scan(tmp_path, 256).items
    plan = BatchPlan(items, batch_size=2, seed=1)
    assert plan.per_epoch == 3  # 3 square images -> 2 batches, 2 wide images -> 1 batch
    epoch0 = [plan.batch(n)[1] for n in range(3)]
    assert sorted(i for b in epoch0 for i in b) == list(range(5))  # every image once per epoch
    assert all(len({items[i].bucket for i in b}) == 1 for b in epoch0)
    assert epoch0 == [BatchPlan(items, 2, 1).batch(n)[1] for n in range(3)]
    assert plan.batch(3)[0] == 1
