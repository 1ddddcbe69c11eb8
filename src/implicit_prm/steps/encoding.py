"""Turn (prompt, response, step spans) into token ids: prompt via the chat template, response tokenized once with offsets."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import InputError
from ..models.chat import chat_text
from ..rewards import token_steps
from .splitting import step_spans

TEMPLATES = ("auto", "chat", "plain", "raw")
OVERLONG = ("error", "skip", "truncate")


@dataclass
class Encoded:
    prompt_ids: list[int]
    response_ids: list[int]
    token_steps: list[int]  # step index of each response token
    n_steps: int
    truncated: bool = False
    spans: list[tuple[int, int]] | None = None  # character spans of all steps (before any truncation)
    tag_positions: list[int] | None = None  # step-tag scorers: index in response_ids of each step's tag token

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


class Overlong(ValueError):
    """A sequence longer than max_length under overlong='error' (the caller adds file/line)."""

    def __init__(self, message: str, prompt_only: bool = False):
        super().__init__(message)
        self.prompt_only = prompt_only


class Encoder:
    """Tokenizes prompts (cached: many responses share one) and responses for one tokenizer and template."""

    def __init__(self, tokenizer, template: str = "auto", max_length: int = 2048, overlong: str = "error",
                 system_prompt: str | None = None):
        if template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}")
        if overlong not in OVERLONG:
            raise ValueError(f"overlong must be one of {OVERLONG}")
        self.tok = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if template == "chat" and not has_template:
            raise ValueError("template 'chat' needs a tokenizer with a chat template; this one has none (use 'plain')")
        self.use_chat = template == "chat" or (template == "auto" and has_template)
        self.raw = template == "raw"
        self.max_length, self.overlong, self.system_prompt = max_length, overlong, system_prompt
        self._prompts: dict[str, list[int]] = {}

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = self._prompts.get(prompt)
        if ids is None:
            if self.use_chat:  # the template writes the special tokens itself; no system prompt: its own default
                ids = self.tok(chat_text(self.tok, prompt, self.system_prompt), add_special_tokens=False)["input_ids"]
            elif self.raw:  # already formatted (a chat-templated prompt as an RL trainer decodes it): as it is
                ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
            else:
                ids = self.tok(prompt + "\n", add_special_tokens=True)["input_ids"]
            self._prompts[prompt] = ids
        return ids

    def encode(self, prompt: str, response: str, spans: list[tuple[int, int]]) -> Encoded | None:
        """Encode one response. Returns None if it is over max_length and overlong='skip'."""
        p_ids = self.prompt_ids(prompt)
        enc = self.tok(response, add_special_tokens=False, return_offsets_mapping=True)
        r_ids, offsets = enc["input_ids"], enc["offset_mapping"]
        steps = token_steps(offsets, spans)
        truncated = False
        if len(p_ids) + len(r_ids) > self.max_length:
            room = self.max_length - len(p_ids)
            what = (f"prompt ({len(p_ids)} tokens) + response ({len(r_ids)} tokens) exceed max_length "
                    f"{self.max_length}")
            if self.overlong == "skip":
                return None
            if self.overlong == "error" or room < 1:
                raise Overlong(what + ("" if room >= 1 else "; the prompt alone leaves no room for the response")
                               + " (raise --max-length, or use --overlong skip|truncate)", prompt_only=room < 1)
            r_ids, steps, truncated = r_ids[:room], steps[:room], True  # keep the start of the response
            return Encoded(p_ids, r_ids, steps, steps[-1] + 1, truncated, spans)  # steps past the cut are dropped
        return Encoded(p_ids, r_ids, steps, len(spans), truncated, spans)


def encode_samples(encoder: Encoder, samples, split: str = "auto", step_regex: str | None = None,
                   separator: str = "\n\n", encode=None) -> list[Encoded | None]:
    """Encode data.Sample objects; errors name the sample's file and line. None marks a skipped overlong sample.
    `encode(prompt, response, spans)` replaces encoder.encode (steps/tags.py puts a tag after each step)."""
    encode = encode or encoder.encode

    out = []
    for s in samples:
        path, line = s.source
        field = "steps" if s.steps is not None else "response"
        try:
            spans = step_spans(s.response, s.steps, split, step_regex, separator)
            out.append(encode(s.prompt, s.response, spans))
        except Overlong as e:
            prompt_field = "problem" if "problem" in s.record and "prompt" not in s.record else "prompt"
            raise InputError(path, line, prompt_field if e.prompt_only else field, str(e)) from None
        except ValueError as e:
            raise InputError(path, line, field, str(e)) from None
    return out
