"""FLOPs counting: a model's shape and the FLOPs of its tokens by mode (generate, forward, train), attention
included (the conventions are in flops/ledger.py)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# SmolLM2-135M-Instruct's config.json (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct), the embedded model:
# counting the built-in data's tokens needs its shape, not its file.
SMOLLM2_135M = {"name": "smollm2-135m", "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                "tie_word_embeddings": True}


def causal_context_sum(length: int, start: int = 0) -> int:
    """Summed causal context of `length` tokens that follow `start` earlier ones: sum_{t=start+1}^{start+length} t.

    A whole sequence of T tokens: T(T+1)/2 (T=4: 1+2+3+4 = 10); 2 tokens generated after a 3-token prompt: 4+5 = 9.
    """
    whole = length * (length + 1) // 2 if isinstance(length, int) else length * (length + 1) / 2  # floats: averages
    return length * start + whole


def attention_flops(n_layer: int, d_attn: int, context_sum: int) -> int:
    """Forward attention FLOPs, 2 n_layer d_attn n_ctx per token (Kaplan et al. 2020, Table 1), over the summed
    causal context: n_layer 2, d_attn 4, one 10-token sequence (context 55) -> 2*2*4*55 = 880."""
    return 2 * n_layer * d_attn * context_sum


def token_flops(mode: str, tokens: int, context_sum: int, params: int, n_layer: int, d_attn: int,
                lora: bool = False) -> tuple[int, int]:
    """(weights, attention) FLOPs of `tokens` run in `mode`: weights 2P (generate, forward), 6P (train), 4P (train
    with LoRA) per token; attention 1x (generate, forward) or 3x (train) the forward attention."""
    weight_factor = {"generate": 2, "forward": 2, "train": 4 if lora else 6}[mode]
    return weight_factor * params * tokens, (3 if mode == "train" else 1) * attention_flops(n_layer, d_attn, context_sum)


def compute_params(model) -> int:
    """P of a loaded causal LM: the parameters other than the input and output embeddings, plus the LM head's
    vocab x hidden matmul counted once (tied or not), plus the head's bias if any. Norm weights are included."""
    heads = [m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None]
    skip = {id(p) for m in heads for p in m.parameters()}
    skip |= {id(p) for n, p in model.named_parameters() if "lora_" in n}  # a LoRA adapter's FLOPs are left out
    body = sum(p.numel() for p in model.parameters() if id(p) not in skip)  # parameters() lists a tied tensor once
    head = model.get_output_embeddings()
    if head is None:
        return body
    bias = getattr(head, "bias", None)
    return body + head.weight.shape[0] * head.weight.shape[1] + (bias.numel() if bias is not None else 0)


@dataclass(frozen=True)
class ModelShape:
    """What FLOPs depend on: P (see `compute_params`), the layers and the attention width (query heads x head dim)."""

    name: str
    params: int
    n_layer: int
    d_attn: int

    @classmethod
    def from_config(cls, cfg, name: str | None = None) -> "ModelShape":
        """From a Llama-shaped config (a dict or a transformers config), no weights: per layer q, k, v, o, the gated
        MLP (3 matrices), two norms and any biases; the final norm; the head (vocab x hidden)."""
        c = cfg if isinstance(cfg, dict) else cfg.get_text_config().to_dict()
        h, heads, inter, layers = c["hidden_size"], c["num_attention_heads"], c["intermediate_size"], c[
            "num_hidden_layers"]
        hd = c.get("head_dim") or h // heads
        kv = c.get("num_key_value_heads") or heads
        layer = 2 * h * heads * hd + 2 * h * kv * hd + 3 * h * inter + 2 * h  # q, o; k, v; MLP; norms
        layer += (heads * hd + 2 * kv * hd + h) * bool(c.get("attention_bias")) + (2 * inter + h) * bool(
            c.get("mlp_bias"))
        params = layer * layers + h + c["vocab_size"] * h  # + final norm + head
        return cls(name or c.get("name") or c.get("_name_or_path") or "unknown", params, layers, heads * hd)

    def step_tag(self, vocab: int, hidden: int) -> "ModelShape":
        """The shape of a step-tag scorer (models.heads.StepLogits): its head computes two logits, not the vocab's,
        so P counts 2 x hidden for the head instead of vocab x hidden."""
        return dataclasses.replace(self, params=self.params - vocab * hidden + 2 * hidden)

    @classmethod
    def from_model(cls, model, name: str) -> "ModelShape":
        shape = cls.from_config(model.config, name)
        return dataclasses.replace(shape, params=compute_params(model))
