"""A1111's prompt attention syntax and its 75-token chunks, against A1111's own documented cases."""

from __future__ import annotations

import pytest

from ldm_cli.errors import UsageError
from ldm_cli.pipeline.prompts.prompt_weights import BREAK, chunk_tokens, parse_prompt_attention, tokenize_prompt

P = parse_prompt_attention


@pytest.mark.parametrize("prompt, expected", [
    # the doctests of A1111's modules/prompt_parser.py
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
        ("a ", 1.0), ("house", 1.1 * 1.1 * 1.3), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
])
def test_a1111_doctests(prompt, expected):
    got = P(prompt)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12)


def test_weights_zero_above_two_and_negative():
    assert P("(a:0) b") == [("a", 0.0), (" b", 1.0)]
    assert P("(a:2.5)") == [("a", 2.5)]
    assert P("(a:-1)") == [("a", -1.0)]
    assert P("(a:+.5)") == [("a", 0.5)]


def test_nesting_multiplies_and_square_divides():
    assert P("((a))") == [("a", pytest.approx(1.21))]
    assert P("[[a]]") == [("a", pytest.approx(1 / 1.21))]
    assert P("([a])") == [("a", pytest.approx(1.0))]
    assert P("((a:2):1.5)") == [("a", 3.0)]


def test_escapes():
    assert P(r"\(a\) \[b\]") == [("(a) [b]", 1.0)]
    assert P("a \\\\ b") == [("a \\ b", 1.0)]
    assert P(r"(\(x\))") == [("(x)", 1.1)]


def test_unbalanced_brackets_as_a1111():
    assert P("a) b] c") == [("a) b] c", 1.0)]  # stray closers are literal
    assert P("[a") == [("a", pytest.approx(1 / 1.1))]  # an unclosed opener reaches the end
    assert P("(a [b") == [("a ", 1.1), ("b", pytest.approx(1.0))]
    assert P("((a)") == [("a", pytest.approx(1.21))]


def test_colon_without_number_is_text_and_weight_needs_a_bracket():
    assert P("a: b") == [("a: b", 1.0)]
    assert P("time 12:30") == [("time 12:30", 1.0)]
    assert P("a:1.5)") == [("a:1.5)", 1.0)]  # ':W)' with no '(' open is plain text
    assert P("(a: 1.5)") == [("a: 1.5", 1.1)]  # A1111 wants the number right after ':'


def test_break():
    assert P("a BREAK b") == [("a", 1.0), BREAK, ("b", 1.0)]
    assert P("aBREAK b") == [("aBREAK b", 1.0)]  # only as a word of its own
    assert P("a break b") == [("a break b", 1.0)]  # upper case only
    assert P("(a BREAK b)") == [("a", 1.1), ("BREAK", pytest.approx(-1.1)), ("b", 1.1)]  # weighted: not a break


def test_empty_and_bad_weight():
    assert P("") == [("", 1.0)]
    with pytest.raises(UsageError, match="not a number"):
        P("(a:1.2.3)")


E, B, C = 49407, 49406, 267  # end, start and comma ids of the CLIP tokenizer


def test_chunks_pad_with_end_tokens_and_weight_one():
    [chunk] = chunk_tokens([([1, 2, 3], 1.5, False)], B, E, C)
    assert chunk.tokens == [B, 1, 2, 3] + [E] * 73
    assert chunk.weights == [1.0, 1.5, 1.5, 1.5] + [1.0] * 73


def test_exactly_75_tokens_is_one_chunk_and_76_is_two():
    assert len(chunk_tokens([(list(range(75)), 1.0, False)], B, E, C)) == 1
    two = chunk_tokens([(list(range(1, 77)), 1.0, False)], B, E, C)
    assert [len(c.tokens) for c in two] == [77, 77]
    assert two[1].tokens[:3] == [B, 76, E]


def test_break_starts_a_new_chunk():
    chunks = chunk_tokens([([1], 1.0, False), ([], -1.0, True), ([2], 1.0, False)], B, E, C)
    assert [c.tokens[:3] for c in chunks] == [[B, 1, E], [B, 2, E]]


def test_comma_backtrack_moves_the_words_after_the_last_comma():
    ids = [1] * 60 + [C] + [2] * 20  # the chunk fills 14 tokens after the comma
    first, second = chunk_tokens([(ids, 1.0, False)], B, E, C)
    assert first.tokens[1:62] == [1] * 60 + [C] and first.tokens[62:] == [E] * 15
    assert second.tokens[1:21] == [2] * 20


def test_no_backtrack_when_the_comma_is_further_than_20_tokens():
    ids = [1] * 50 + [C] + [2] * 30  # 24 tokens after the comma
    first, second = chunk_tokens([(ids, 1.0, False)], B, E, C)
    assert first.tokens[1:76] == ids[:75] and second.tokens[1:7] == ids[75:]


def test_with_the_real_tokenizer():
    from transformers import CLIPTokenizer

    from ldm_cli.models.loading import SD15_CONFIG_DIR

    tokenizer = CLIPTokenizer.from_pretrained(SD15_CONFIG_DIR / "tokenizer")
    [chunk] = tokenize_prompt(tokenizer, "a (red:1.5) fox")
    ids = tokenizer("a red fox").input_ids  # [B, a, red, fox, E]
    assert chunk.tokens[:5] == ids and chunk.weights[:5] == [1.0, 1.0, 1.5, 1.0, 1.0]
    [plain] = tokenize_prompt(tokenizer, "a (red:1.5) fox", syntax="plain")
    literal = tokenizer("a (red:1.5) fox").input_ids
    assert plain.tokens[: len(literal)] == literal and set(plain.weights) == {1.0}
