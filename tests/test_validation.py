"""Property tests for argument validation: every input either passes validation or exits 2 with
one line naming the problem. Validation runs before any model loads, so we point --model at a
path that does not exist: passing validation shows up as the (exit 1) missing-model error."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MISSING_MODEL = "/nonexistent/model-folder"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run(ldm, *args):
    return ldm("generate", *args, "--model", MISSING_MODEL)


def _assert_outcome(result, valid: bool):
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    if valid:
        assert result.code == 1 and "no such folder or file" in lines[-1], result.stderr
    else:
        assert result.code == 2, result.stderr
        assert len(lines) == 1 and lines[0].startswith("ldm: error: "), result.stderr


def _as_int(text: str):
    try:
        return int(text.strip())
    except ValueError:
        return None


int_text = st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=6))


@FAST
@given(steps=int_text)
def test_steps(ldm, steps):
    value = _as_int(steps)
    _assert_outcome(_run(ldm, "a cat", f"--steps={steps}"), value is not None and 1 <= value <= 1000)


@FAST
@given(guidance=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "inf", "-1", "x", "1e400"])))
def test_guidance(ldm, guidance):
    try:
        value = float(str(guidance))
    except ValueError:
        value = None
    valid = value is not None and math.isfinite(value) and value >= 0
    _assert_outcome(_run(ldm, "a cat", f"--g={guidance}"), valid)


@FAST
@given(height=st.integers(-100, 3000), width=st.integers(-100, 3000))
def test_height_and_width(ldm, height, width):
    ok = lambda v: 64 <= v <= 2048 and v % 8 == 0  # noqa: E731
    _assert_outcome(_run(ldm, "a cat", f"--height={height}", f"--width={width}"), ok(height) and ok(width))


@FAST
@given(seed=st.one_of(st.integers(-(2**65), 2**65), st.sampled_from([0, 2**64 - 1, 2**64])), count=st.integers(-2, 5))
def test_seed_and_count(ldm, seed, count):
    valid = 0 <= seed and 1 <= count and seed + count - 1 <= 2**64 - 1
    _assert_outcome(_run(ldm, "a cat", f"--seed={seed}", f"--num-images={count}"), valid)


@FAST
@given(prompt=st.text(max_size=20))
def test_prompt(ldm, prompt):
    if prompt.startswith("-"):
        prompt = " " + prompt  # a leading dash would be read as an option
    _assert_outcome(_run(ldm, prompt), bool(prompt.strip()))


@FAST
@given(scheduler=st.one_of(st.sampled_from(["euler", "dpm++2m-karras", "unipc", "DPM2", "DPM++ 2M Karras", "lcm", "tcd", "TCD"]),
                           st.text(max_size=8)))
def test_scheduler(ldm, scheduler):
    from ldm_cli.errors import UsageError
    from ldm_cli.pipeline.loop.schedule_types import resolve_sampler

    # Our short names and A1111's (any case and spacing, "DPM++ 2M Karras" too) are valid; the property is
    # that the command agrees with the name table: valid names pass validation, others exit 2 in one line.
    try:
        valid = bool(resolve_sampler(scheduler))
    except UsageError:
        valid = False
    _assert_outcome(_run(ldm, "a cat", f"--scheduler={scheduler}"), valid)


@FAST
@given(gamma=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "-0", "1", "1.0001", "x", ""])))
def test_tcd_gamma(ldm, gamma):
    try:
        value = float(str(gamma))
    except ValueError:
        value = None
    _assert_outcome(_run(ldm, "a cat", "--scheduler", "tcd", f"--tcd-gamma={gamma}"), value is not None and 0 <= value <= 1)


def test_output_folder_must_be_writable(ldm, tmp_path):
    (tmp_path / "afile").write_text("x")
    _assert_outcome(_run(ldm, "a cat", "--out", "afile/sub/"), False)
    _assert_outcome(_run(ldm, "a cat", "--out", "img.jpg"), False)
    _assert_outcome(_run(ldm, "a cat", "--out", "new/folder/img.png"), True)


def test_other_flag_values(ldm, tmp_path):
    _assert_outcome(_run(ldm, "a cat", "--dtype", "fp8"), False)
    _assert_outcome(_run(ldm, "a cat", "--device", "tpu"), False)
    _assert_outcome(_run(ldm, "a cat", "--every", "0"), False)
    _assert_outcome(_run(ldm, "a cat", "--intermediates", "fast"), False)
    _assert_outcome(_run(ldm, "--prompts-file", "missing.txt"), False)
    _assert_outcome(_run(ldm, "a cat", "--no-such-flag"), False)
    _assert_outcome(_run(ldm), False)
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    _assert_outcome(_run(ldm, "--prompts-file", "empty.txt"), False)
    _assert_outcome(_run(ldm, "a cat", "--prompts-file", "empty.txt"), False)
