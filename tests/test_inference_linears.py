"""models.loading.inference_linears: a frozen CPU model's linear layers stored in bf16 for bf16 scoring compute
exactly what bf16 autocast over fp32 weights computes, and the weights' fingerprints do not move."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from implicit_prm.core.precision import autocast_context
from implicit_prm.models.loading import fingerprint, inference_linears
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.scoring.implicit import ImplicitPRM

CPU = torch.device("cpu")


def _tiny(tied: bool, lora: bool):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, tie_word_embeddings=tied, attn_implementation="eager")
    lm = LlamaForCausalLM(cfg)
    with torch.no_grad():
        lm.get_output_embeddings().weight.normal_(0, 0.5)
    if lora:
        from peft import LoraConfig, get_peft_model

        lm = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
        with torch.no_grad():
            for name, p in lm.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.3)  # a trained adapter: B is no longer zero
    return lm.eval()


def _logprobs(lm) -> torch.Tensor:
    ids = torch.tensor([[5, 17, 3, 44, 9, 81, 2, 60], [7, 7, 30, 12, 90, 1, 0, 0]])
    mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    with torch.no_grad(), autocast_context(CPU, "bf16"):
        return TokenLogProbs(lm)(ids, mask, 0)


@pytest.mark.parametrize("tied,lora,cast", [(False, False, 15), (True, False, 14), (True, True, 14 + 12)])
def test_bf16_linears_compute_the_same_logprobs_and_keep_the_fingerprint(tied, lora, cast):
    """2 layers x 7 projections, the untied head (a tied one stays fp32: the embedding lookup is not autocast),
    and each LoRA A and B of 3 target modules x 2 layers."""
    lm = _tiny(tied, lora)
    before, fps = _logprobs(lm), (fingerprint(lm, True), fingerprint(lm, False))
    assert inference_linears(lm, CPU, "bf16") == cast
    assert torch.equal(_logprobs(lm), before)  # bit-identical, not merely close
    assert (fingerprint(lm, True), fingerprint(lm, False)) == fps
    assert not any(p.requires_grad for p in lm.parameters())
    assert lm.get_input_embeddings().weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for n, p in lm.named_parameters() if "norm" in n)
    assert (lm.get_output_embeddings().weight.dtype == torch.float32) == tied
    assert inference_linears(lm, CPU, "bf16") == 0  # already cast


def test_fp32_and_accelerators_are_left_alone():
    lm = _tiny(False, False)
    assert inference_linears(lm, CPU, "fp32") == 0
    assert all(p.dtype == torch.float32 and p.requires_grad for p in lm.parameters())
    assert inference_linears(lm, torch.device("meta"), "bf16") == 0  # not a CPU: loaded in bf16 there already


def test_implicit_prm_scores_with_bf16_linears_on_a_cpu(tiny_model, tiny_model_b):
    """ImplicitPRM.from_pretrained in bf16 on a CPU stores the PRM's linears (and its separate reference's) in bf16;
    its rewards equal beta x (PRM - reference) computed under autocast from the fp32 models."""
    from implicit_prm.models.loading import load_model

    prm = ImplicitPRM.from_pretrained(tiny_model_b, ref=tiny_model, beta=0.5, precision="bf16", device="cpu",
                                      logprob_cache="none")
    assert prm.model.lm.model.layers[0].mlp.down_proj.weight.dtype == torch.bfloat16
    steps = ["3 + 4 = 7.", "7 * 2 = 14.", "The answer is 14."]
    got = prm.score("Janet has 3 apples. How many?", steps)
    enc = prm.encoder.encode("Janet has 3 apples. How many?", "\n\n".join(steps),
                             [(0, 1)])  # one span: the whole response's summed log-ratio
    ids = torch.tensor([enc.ids])
    start = len(enc.prompt_ids) - 1
    sums = []
    for path in (tiny_model_b, tiny_model):
        with torch.no_grad(), autocast_context(CPU, "bf16"):
            sums.append(float(TokenLogProbs(load_model(path, attn_implementation="auto", device="cpu").eval())(ids, torch.ones_like(ids), start).sum()))
    assert got["q_values"][-1] == pytest.approx(0.5 * (sums[0] - sums[1]), abs=1e-4)
