"""A1111's prompt dialect, pure: attention weights, BREAK, and the 75-token chunks CLIP sees.

Rules (as AUTOMATIC1111's modules/prompt_parser.py and sd_hijack_clip.py apply them, SD1):
  (text)      weight x 1.1            [text]      weight / 1.1
  (text:1.3)  weight x 1.3            nesting multiplies: ((a)) = 1.21, ([a]) = 1.0
  \\( \\) \\[ \\]  literal brackets      \\\\ a literal backslash
  BREAK       (upper case, a word of its own) ends the current 75-token chunk
  An unclosed ( or [ applies to the rest of the prompt; a stray ) or ] is literal text.
  (text:W) needs a number W right before its ')'; a ':' anywhere else is plain text.

No torch here: the tokenizer is passed in, and the output is token ids and per-token weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ldm_cli.errors import UsageError

ROUND, SQUARE = 1.1, 1 / 1.1
BREAK = ("BREAK", -1.0)  # A1111's marker fragment
CHUNK = 75  # prompt tokens per chunk; BOS and EOS make it 77
COMMA_BACKTRACK = 20  # A1111's default comma_padding_backtrack

# One match per lexeme, tried in this order (A1111's re_attention).
_LEXEME = re.compile(
    r"""\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:""",
    re.X,
)
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) fragments; BREAK becomes ("BREAK", -1)."""
    fragments: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for item in fragments[start:]:
            item[1] *= factor

    for match in _LEXEME.finditer(text):
        lexeme, weight = match.group(0), match.group(1)
        if lexeme.startswith("\\"):
            fragments.append([lexeme[1:], 1.0])
        elif lexeme == "(":
            round_open.append(len(fragments))
        elif lexeme == "[":
            square_open.append(len(fragments))
        elif weight is not None and round_open:
            multiply_from(round_open.pop(), _number(weight, lexeme))
        elif lexeme == ")" and round_open:
            multiply_from(round_open.pop(), ROUND)
        elif lexeme == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE)
        else:  # plain text, a stray bracket, a lone ':' or an unmatched ':W)'
            for i, part in enumerate(_BREAK_SPLIT.split(lexeme)):
                if i:
                    fragments.append(list(BREAK))
                fragments.append([part, 1.0])
    for start in round_open:  # unclosed brackets reach to the end
        multiply_from(start, ROUND)
    for start in square_open:
        multiply_from(start, SQUARE)
    if not fragments:
        fragments = [["", 1.0]]
    merged = [fragments[0]]
    for item in fragments[1:]:  # runs of one weight become one fragment (BREAKs included, as A1111)
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(text, weight) for text, weight in merged]


def _number(weight: str, lexeme: str) -> float:
    try:
        return float(weight)
    except ValueError:  # e.g. "(a:1.2.3)": A1111 fails here too
        raise UsageError(
            f"prompt weight {lexeme!r} is not a number; write one number, e.g. (red:1.2), or --prompt-syntax plain"
        ) from None


def plain_fragments(text: str) -> list[tuple[str, float]]:
    """--prompt-syntax plain: the whole prompt is literal text of weight 1 (A1111's emphasis "None")."""
    return [(text, 1.0)]


@dataclass
class Chunk:
    """77 token ids ([BOS] + 75 + [EOS], padded with EOS) and one weight per id."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def chunk_tokens(
    fragments: list[tuple[list[int], float, bool]], bos: int, eos: int, comma: int | None,
    backtrack: int = COMMA_BACKTRACK,
) -> list[Chunk]:
    """Pack fragments (ids, weight, is_break) into chunks of 75, as A1111's tokenize_line does.

    A chunk that fills up within `backtrack` tokens after its last comma ends right after that
    comma, and the tokens past it move on to the next chunk.
    """
    chunks: list[Chunk] = []
    current = Chunk()
    last_comma = -1

    def close() -> None:
        nonlocal current, last_comma
        room = CHUNK - len(current.tokens)
        current.tokens = [bos] + current.tokens + [eos] * room + [eos]
        current.weights = [1.0] + current.weights + [1.0] * room + [1.0]
        chunks.append(current)
        current, last_comma = Chunk(), -1

    for ids, weight, is_break in fragments:
        if is_break:
            close()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(current.tokens)
            elif backtrack and len(current.tokens) == CHUNK and last_comma != -1 and CHUNK - last_comma <= backtrack:
                cut = last_comma + 1
                moved_tokens, moved_weights = current.tokens[cut:], current.weights[cut:]
                current.tokens, current.weights = current.tokens[:cut], current.weights[:cut]
                close()
                current.tokens, current.weights = moved_tokens, moved_weights
            if len(current.tokens) == CHUNK:
                close()
            current.tokens.append(token)
            current.weights.append(weight)
    if current.tokens or not chunks:
        close()
    return chunks


def tokenize_prompt(tokenizer, prompt: str, syntax: str = "a1111") -> list[Chunk]:
    """A prompt -> its chunks with a Hugging Face CLIP tokenizer."""
    parsed = parse_prompt_attention(prompt) if syntax == "a1111" else plain_fragments(prompt)
    texts = [text for text, _ in parsed]
    ids = tokenizer(texts, truncation=False, add_special_tokens=False).input_ids
    fragments = [(tokens, weight, (text, weight) == BREAK) for tokens, (text, weight) in zip(ids, parsed)]
    comma = tokenizer.get_vocab().get(",</w>")
    return chunk_tokens(fragments, tokenizer.bos_token_id, tokenizer.eos_token_id, comma)
