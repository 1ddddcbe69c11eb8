"""The chat template, applied in one place: what a model reads before its answer."""
from __future__ import annotations


def chat_text(tok, user: str, system: str | None) -> str:
    """What the model reads before its answer: the chat template with the assistant turn opened (the user message
    and a newline for a tokenizer without a template)."""
    if not getattr(tok, "chat_template", None):
        return user + "\n"
    messages = ([{"role": "system", "content": system}] if system is not None else []) + \
        [{"role": "user", "content": user}]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
