"""The chat template, applied in one place (`render_chat`): what a model reads before its answer (`chat_text`: the
prompt of scoring, training, rollouts and search), released PRMs' conversation layouts (scoring/layouts.py), and
where a decoded conversation's answer starts (`assistant_opening`: the reward server)."""
from __future__ import annotations


def chat_text(tok, user: str, system: str | None) -> str:
    """What the model reads before its answer: the chat template with the assistant turn opened (the user message
    and a newline for a tokenizer without a template)."""
    if not getattr(tok, "chat_template", None):
        return user + "\n"
    messages = ([{"role": "system", "content": system}] if system is not None else []) + \
        [{"role": "user", "content": user}]
    return render_chat(tok, messages, generation_prompt=True)


def render_chat(tok, messages: list[dict], generation_prompt: bool = False) -> str:
    """The tokenizer's chat template over `messages`, as text (it writes the special tokens itself), with the
    assistant turn opened when `generation_prompt`."""
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_opening(tok) -> str | None:
    """The text a chat template puts before the assistant's answer (what add_generation_prompt adds, e.g.
    "<|im_start|>assistant\n"); None without a template or where it adds nothing at the end."""
    if not getattr(tok, "chat_template", None):
        return None
    turn = [{"role": "user", "content": "\u2063"}]
    try:
        closed = render_chat(tok, turn)
        opened = render_chat(tok, turn, generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that needs other messages: no fallback
        return None
    return opened[len(closed):] if opened.startswith(closed) and len(opened) > len(closed) else None
