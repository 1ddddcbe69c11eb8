"""What each released format reads at its positions, as one nn.Module interface: forward(input_ids (B, T),
attention_mask, positions (B, T) bool) -> (N,) values at the True positions, in row-major order.

- StepLogits: z = logit(+) - logit(-) of a causal LM (Math-Shepherd, RLHFlow, step-tag PRMs trained here);
  P(+) = sigmoid(z) = the softmax over the two logits that the model cards take.
- TokenClassLogits: z = logit[1] - logit[0] of a 2-label token-classification head (Qwen2.5-Math-PRM); sigmoid(z) =
  softmax(logits)[1], the card's positive probability.
- SequenceValues: the 1-label reward head of a sequence-classification model (Skywork-Reward style), raw.
Each keeps the wrapped model as `.lm` (fingerprints read it) and gives its FLOPs shape (`flops_shape`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError
from ..flops.counting import ModelShape


class TokenClassLogits(nn.Module):
    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.lm, self.name = model, name

    def flops_shape(self, name: str) -> ModelShape:
        return ModelShape.from_model(self.lm, name)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask)
        logits = out.logits if hasattr(out, "logits") else out[0]  # (B, T, L)
        if logits.dim() != 3 or logits.shape[-1] != 2:
            raise ConfigError(f"'{self.name}': the head gives {tuple(logits.shape)} logits; the token-classification "
                              "format needs 2 labels per token (0 = wrong step, 1 = right step)")
        sel = logits[positions].float()  # (N, 2)
        return sel[:, 1] - sel[:, 0]  # (N,)


def value_head(model: nn.Module) -> nn.Module:
    """The linear reward head of a transformers *ForSequenceClassification model (`score` or `classifier`)."""
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ConfigError(f"{type(model).__name__} has no 'score' or 'classifier' head; it is not a sequence-"
                      "classification reward model this format reads")


class SequenceValues(nn.Module):
    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.lm, self.name = model, name
        self.head = value_head(model)

    def flops_shape(self, name: str) -> ModelShape:
        return ModelShape.from_model(self.lm, name)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        values = self.head(hidden[positions])  # (N, L)
        if values.shape[-1] != 1:
            raise ConfigError(f"'{self.name}': the head gives {values.shape[-1]} labels; the orm format reads a "
                              "1-label reward head")
        return values[:, 0].float()  # (N,)


class StepLogits(nn.Module):
    """z = logit(+) - logit(-) at chosen positions of a batch: one nn.Module so that accelerate wraps it."""

    def __init__(self, lm: nn.Module, plus_id: int, minus_id: int):
        super().__init__()
        self.lm, self.plus_id, self.minus_id = lm, plus_id, minus_id

    def flops_shape(self, name: str) -> ModelShape:
        """The LM's shape with a head of two logits, not the vocab's (ModelShape.step_tag)."""
        return ModelShape.from_model(self.lm, name).step_tag(*self.lm.get_output_embeddings().weight.shape)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(N,) z at the True entries of `positions` (B, T), in row-major order."""
        decoder = self.lm.get_decoder()
        if attention_mask is not None and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all()):
            attention_mask = None  # right padding under a causal mask changes nothing read (see TokenLogProbs)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        h = hidden[positions]  # (N, H)
        head = self.lm.get_output_embeddings()
        w = head.weight[[self.plus_id, self.minus_id]]  # (2, H)
        logits = h @ w.to(h.dtype).T  # (N, 2)
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[[self.plus_id, self.minus_id]].to(h.dtype)
        return (logits[:, 0] - logits[:, 1]).float()  # (N,)
