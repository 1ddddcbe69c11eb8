"""Token -> step mapping through Encoder.encode with the real SmolLM2 tokenizer, on tokenizations that cross steps.

The rule: a token belongs to the step whose span holds its first character; the separator after a step belongs to
that step. Expected steps are computed here without offset_mapping: from each token's bytes (the byte-level BPE
alphabet maps one symbol to one byte) and a brute-force scan of hand-written spans.
"""
import pytest

from implicit_prm.steps.encoding import Encoder, Overlong
from implicit_prm.steps.splitting import step_spans


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable symbol table, inverted: symbol -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


BYTE_DECODER = _byte_decoder()


def token_bytes(tok, ids) -> list[bytes]:
    return [bytes(BYTE_DECODER[ch] for ch in piece) for piece in tok.convert_ids_to_tokens(ids)]


def char_ranges(tok, text: str, ids) -> list[tuple[int, int]]:
    """(first, last) character index of each token, from the tokens' byte lengths."""
    char_of_byte = [i for i, ch in enumerate(text) for _ in ch.encode("utf-8")]
    out, pos = [], 0
    for b in token_bytes(tok, ids):
        out.append((char_of_byte[pos], char_of_byte[pos + len(b) - 1]))
        pos += len(b)
    assert pos == len(text.encode("utf-8"))
    return out


def owner(spans, c: int) -> int:
    """The step whose span holds character c (brute force)."""
    hits = [k for k, (s, e) in enumerate(spans) if s <= c < e]
    assert len(hits) == 1, (spans, c)
    return hits[0]


def bounds_to_spans(bounds: list[int], length: int) -> list[tuple[int, int]]:
    b = [0, *bounds, length]
    return [(b[i], b[i + 1]) for i in range(len(b) - 1)]


@pytest.fixture(scope="module")
def tok(smol_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_tokenizer_dir)


@pytest.fixture(scope="module")
def encoder(tok):
    return Encoder(tok, template="auto", max_length=4096)


# (id, response, step_spans kwargs, hand-written step boundaries, whether some token crosses a boundary)
CASES = [
    # "\n\n" before "Step" tokenizes as two "\n" tokens; markers start each "Step k:" line
    ("markers", "Step 1: 3 + 4 = 7\n\nStep 2: 7 * 2 = 14", {}, [19], False),
    # "\n\n  Step 2": the whitespace run "\n\n " is one token that crosses the line start of the marker (at 11)
    ("markers_indented", "Step 1: a\n\n  Step 2: b", {"mode": "markers"}, [11], True),
    # "\n\n\n" tokenizes as "\n\n" + "\n"; the whole run is the separator of step 0
    ("blank_triple_newline", "x=12\n\n\ny", {"mode": "blank"}, [7], False),
    # a whitespace-only line inside the separator: "abc\n \nd" -> tokens "\n " + "\n"
    ("blank_whitespace_line", "abc\n \nd", {"mode": "blank"}, [6], False),
    # leading spaces: " " + " lead" tokens; "\n\n" ends step 0
    ("leading_spaces", "  lead\n\nnext", {"mode": "blank"}, [8], False),
    # steps mode, default separator, next step starts with a space: " So" starts at the boundary -> step 1
    ("steps_leading_space", "x = 5.\n\n So x + 1 = 6.", {"steps": ["x = 5.", " So x + 1 = 6."]}, [8], False),
    # no separator, boundary inside a word: "Hello" (0..4) crosses 3 -> step 0
    ("steps_mid_word", "Hello world", {"steps": ["Hel", "lo world"], "separator": ""}, [3], True),
    # separator " ": " world" starts on the separator (step 0's) -> step 1 gets no token at all
    ("steps_space_separator", "Hello world", {"steps": ["Hello", "world"], "separator": " "}, [6], True),
    # regex split in the middle of a word: "the" ends step 0 inside " therefore"
    ("regex_mid_word", "so therefore x", {"mode": "regex", "regex": "the"}, [6], True),
    # digits are single tokens: a split between "2" and "3"
    ("regex_digits", "x=123", {"mode": "regex", "regex": "2"}, [4], False),
    # " 12\n\n\nStep": digits and the newline run do not merge
    ("blank_after_number", "total: 12\n\n\nStep 2", {"mode": "blank"}, [12], False),
    # emoji: " 😀" is " " + 3 bytes in one token (crosses 3) and the 4th byte alone (char 3 -> step 1)
    ("emoji_split", "ok 😀 yes", {"steps": ["ok ", "😀 yes"], "separator": ""}, [3], True),
    # emoji + skin-tone modifier: three byte tokens per character, all sharing its offsets
    ("emoji_modifier", "👍🏽ok", {"steps": ["👍", "🏽ok"], "separator": ""}, [1], False),
    # CJK: two byte tokens per character
    ("cjk", "你好世界", {"steps": ["你好", "世界"], "separator": ""}, [2], False),
    # a combining accent starting step 1: "e" | U+0301 (two byte tokens) "x"
    ("combining", "e\u0301x", {"steps": ["e", "\u0301x"], "separator": ""}, [1], False),
    # CRLF: "\r\n\r" is one token crossing the first "\r\n" boundary (3)
    ("crlf_regex", "a\r\n\r\nb", {"mode": "regex", "regex": r"\r\n"}, [3, 5], True),
    # no-space sentence boundary: "." ends step 0, "The" starts step 1
    ("regex_no_space", "The cat.The dog.", {"mode": "regex", "regex": r"\."}, [8], False),
]


@pytest.mark.parametrize("response,kw,bounds,crosses", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_token_steps_follow_the_first_character_rule(tok, encoder, response, kw, bounds, crosses):
    spans = bounds_to_spans(bounds, len(response))
    assert step_spans(response, **kw) == spans
    enc = encoder.encode("What is it?", response, spans)

    ranges = char_ranges(tok, response, enc.response_ids)
    expected = [owner(spans, first) for first, _ in ranges]
    assert enc.token_steps == expected
    assert enc.n_steps == len(spans) and not enc.truncated
    # the case really has (or has not) a token whose characters lie in two steps
    assert any(owner(spans, a) != owner(spans, b) for a, b in ranges) == crosses
    # every token maps to a step at or after the previous token's
    assert enc.token_steps == sorted(enc.token_steps)


def test_hand_checked_examples(tok, encoder):
    def steps_of(response, **kw):
        return encoder.encode("q", response, step_spans(response, **kw)).token_steps

    # "Hello" | " world", boundary at 3 inside "Hello": [0, 1]
    assert steps_of("Hello world", steps=["Hel", "lo world"], separator="") == [0, 1]
    # separator " " belongs to step 0 and " world" starts on it: [0, 0], step 1 has no token
    assert steps_of("Hello world", steps=["Hello", "world"], separator=" ") == [0, 0]
    # "ok", " 😀"(bytes 1-3), "😀"(byte 4), " yes": boundary before the emoji -> [0, 0, 1, 1]
    assert steps_of("ok 😀 yes", steps=["ok ", "😀 yes"], separator="") == [0, 0, 1, 1]
    # "a", "\r\n\r", "\n", "b" with boundaries 3 and 5: [0, 0, 1, 2]
    assert steps_of("a\r\n\r\nb", mode="regex", regex=r"\r\n") == [0, 0, 1, 2]
    # "so", " therefore" (starts at 2, step 0 ends at 6), " x": [0, 0, 1]
    assert steps_of("so therefore x", mode="regex", regex="the") == [0, 0, 1]


def test_blank_mode_indented_step_keeps_its_first_word(encoder):
    response = "x = 5.\n\n So x + 1 = 6."
    enc = encoder.encode("q", response, step_spans(response, mode="blank"))
    # tokens: x, " =", " ", 5, ".", "\n\n" | " So", ...
    assert enc.token_steps[6] == 1
    # "x = 5.\n\n\n   So": tokens ..., "\n\n", "\n  ", " So"; the blank-line separator is "\n\n\n" (6..8)
    response = "x = 5.\n\n\n   So"
    enc = encoder.encode("q", response, step_spans(response, mode="blank"))
    assert enc.token_steps[-1] == 1


def test_token_steps_agree_with_char_to_token(tok, encoder):
    """A second independent view: each token's first character, found by scanning characters with char_to_token."""
    response = "Step 1: 15 + 10 = 25\n\nStep 2: 25 * 9 = 225 😀\n\nStep 3: 你好 done."
    spans = step_spans(response)
    enc = encoder.encode("q", response, spans)
    be = tok(response, add_special_tokens=False)
    first_char = {}
    for c in range(len(response)):
        t = be.char_to_token(c)
        if t is not None:
            first_char.setdefault(t, c)
    for t, c in first_char.items():
        assert enc.token_steps[t] == owner(spans, c)
    assert len(spans) == 3 and sorted(set(enc.token_steps)) == [0, 1, 2]


@pytest.mark.parametrize("response", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_response_ids_round_trip(tok, encoder, response):
    enc = encoder.encode("q", response, [(0, len(response))])
    assert enc.response_ids == tok(response, add_special_tokens=False)["input_ids"]
    assert b"".join(token_bytes(tok, enc.response_ids)) == response.encode("utf-8")
    assert tok.decode(enc.response_ids) == response
    assert enc.token_steps == [0] * len(enc.response_ids)


def test_prompt_ids_come_from_the_chat_template(tok, encoder):
    prompt = "Start with 7. Add 5. What is the result?"
    enc = encoder.encode(prompt, "Step 1: 7 + 5 = 12", [(0, 18)])
    messages = [{"role": "user", "content": prompt}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and prompt in text
    templated = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    templated = templated["input_ids"] if hasattr(templated, "keys") else templated
    assert enc.prompt_ids == templated
    assert enc.prompt_ids == tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(enc.prompt_ids) == text
    assert enc.ids == enc.prompt_ids + enc.response_ids and len(enc) == len(enc.ids)
    # plain template: the prompt and a newline, with the tokenizer's own special tokens
    plain = Encoder(tok, template="plain").encode(prompt, "x", [(0, 1)])
    assert plain.prompt_ids == tok(prompt + "\n")["input_ids"]


# ---------------------------------------------------------------- overlong rules


@pytest.fixture(scope="module")
def overlong_case(tok):
    prompt, response = "hi", "Step 1: 3 + 4 = 7\n\nStep 2: 7 * 2 = 14"
    spans = step_spans(response)
    n_prompt = len(Encoder(tok).prompt_ids(prompt))
    n_resp = len(tok(response, add_special_tokens=False)["input_ids"])
    return prompt, response, spans, n_prompt, n_resp


def test_overlong_error(tok, overlong_case):
    prompt, response, spans, n_prompt, n_resp = overlong_case
    assert Encoder(tok, max_length=n_prompt + n_resp).encode(prompt, response, spans) is not None  # exact fit
    with pytest.raises(Overlong, match="exceed max_length"):
        Encoder(tok, max_length=n_prompt + n_resp - 1).encode(prompt, response, spans)


def test_overlong_skip(tok, overlong_case):
    prompt, response, spans, n_prompt, n_resp = overlong_case
    assert Encoder(tok, max_length=n_prompt + n_resp - 1, overlong="skip").encode(prompt, response, spans) is None
    # the prompt alone too long: still skipped, not an error
    assert Encoder(tok, max_length=n_prompt, overlong="skip").encode(prompt, response, spans) is None


def test_overlong_truncate_keeps_the_first_tokens(tok, encoder, overlong_case):
    prompt, response, spans, n_prompt, n_resp = overlong_case
    full = encoder.encode(prompt, response, spans)
    assert not full.truncated
    enc = Encoder(tok, max_length=n_prompt + 5, overlong="truncate").encode(prompt, response, spans)
    assert enc.truncated and len(enc) == n_prompt + 5
    assert enc.prompt_ids == full.prompt_ids
    assert enc.response_ids == full.response_ids[:5]
    assert enc.token_steps == full.token_steps[:5]
    assert full.n_steps == 2
    assert enc.n_steps == max(enc.token_steps) + 1  # steps wholly past the cut are dropped, not scored as 0
    # no room at all for the response: an error even under truncate
    with pytest.raises(Overlong, match="no room"):
        Encoder(tok, max_length=n_prompt, overlong="truncate").encode(prompt, response, spans)


def test_encoder_rejects_unknown_options(tok):
    with pytest.raises(ValueError, match="template"):
        Encoder(tok, template="jinja")
    with pytest.raises(ValueError, match="overlong"):
        Encoder(tok, overlong="drop")
