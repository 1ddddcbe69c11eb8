"""Where models run (`--device`), the attention kernel they load with (`--attn-implementation`), the dtype of
inference weights, and resuming a run saved before a field existed."""
from __future__ import annotations

import pytest
import torch

from implicit_prm.core.config import field_defaults
from implicit_prm.core.errors import ConfigError
from implicit_prm.core.precision import weights_dtype
from implicit_prm.core.resume import changed_fields
from implicit_prm.models.loading import EAGER_CPU_MAX_TRAIN_LENGTH, attention_kernel, load_model
from implicit_prm.models.logprobs import TokenLogProbs
from implicit_prm.models.settings import DeviceSettings
from implicit_prm.scoring.load import load_scorer
from implicit_prm.scoring.settings import ScorerSettings


def test_device_settings_resolve():
    assert DeviceSettings().torch_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert DeviceSettings(device="auto").torch_device(torch.device("cuda:3")) == torch.device("cuda:3")  # a launch
    assert DeviceSettings(device="cpu").torch_device(torch.device("cuda:3")) == torch.device("cpu")
    assert DeviceSettings(device="cuda:1").torch_device() == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="field 'device': 'gpu0' is not a device"):
        DeviceSettings(device="gpu0").torch_device()


def test_inference_weights_are_bf16_only_on_an_accelerator_asked_for_bf16():
    assert weights_dtype(torch.device("cpu"), "bf16") == torch.float32  # a CPU keeps fp32 weights and autocasts
    assert weights_dtype(torch.device("cpu"), "auto") == torch.float32
    assert weights_dtype(torch.device("cuda"), "fp32") == torch.float32
    assert weights_dtype(torch.device("cuda"), "bf16") == torch.bfloat16  # explicit bf16 needs no hardware probe


def test_attention_kernel_reaches_from_pretrained(tiny_model, tiny_model_b):
    assert load_model(tiny_model, attn_implementation="eager").config._attn_implementation == "eager"
    assert load_model(tiny_model, attn_implementation="sdpa").config._attn_implementation == "sdpa"
    prm = load_scorer(ScorerSettings(prm=tiny_model_b, ref=tiny_model, attn_implementation="eager",
                                     precision="fp32", device="cpu"))
    assert prm.model.lm.config._attn_implementation == "eager" and prm.attn_implementation == "eager"
    assert next(prm.model.parameters()).device == torch.device("cpu")
    assert next(prm.model.parameters()).dtype == torch.float32


def test_auto_attention_is_eager_on_a_cpu_for_inference_and_short_training(tiny_model):
    assert attention_kernel("auto", "cpu") == "eager"  # inference
    assert attention_kernel("auto", torch.device("cpu"), EAGER_CPU_MAX_TRAIN_LENGTH) == "eager"
    assert attention_kernel("auto", "cpu", EAGER_CPU_MAX_TRAIN_LENGTH + 1) == "sdpa"  # T^2 weights kept for backward
    assert attention_kernel("auto", "cuda") == "sdpa" and attention_kernel("auto", None) == "sdpa"
    assert attention_kernel("sdpa", "cpu") == "sdpa" and attention_kernel(None, "cpu") is None  # asked for: kept
    assert DeviceSettings().attn_implementation == "auto"
    assert load_model(tiny_model, attn_implementation="auto", device="cpu").config._attn_implementation == "eager"
    assert load_model(tiny_model, attn_implementation="auto").config._attn_implementation == "sdpa"  # no device


def test_eager_and_sdpa_give_the_same_fp32_logprobs(tiny_model):
    torch.manual_seed(0)
    ids = torch.randint(3, 1000, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    outs = []
    for kernel in ("eager", "sdpa"):
        with torch.no_grad():
            outs.append(TokenLogProbs(load_model(tiny_model, attn_implementation=kernel).eval())(ids, mask, 2))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)


def test_a_field_added_since_the_saved_run_at_its_default_is_no_change():
    from implicit_prm.training.config import TrainConfig

    defaults = field_defaults(TrainConfig)
    assert defaults["device"] == "auto" and defaults["columns"] == [] and "data" not in defaults
    old = {"lr": 1e-5, "objective": "ce"}  # saved before `device` and `columns` existed
    new = {"lr": 1e-5, "objective": "ce", "device": "auto", "columns": []}
    assert changed_fields(old, new, defaults) == []
    assert changed_fields(old, {**new, "device": "cuda"}, defaults) == ["device"]
    assert changed_fields(old, new) == ["columns", "device"]  # without defaults every new key is a change
    assert changed_fields({**old, "gone": 1}, {**new, "lr": 2e-5}, defaults) == ["lr"]


def test_greedy_generation_repeats_its_one_decode_n_times(tiny_model):
    from implicit_prm.models.generation import generate
    from implicit_prm.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    tok.padding_side = "left"
    model = load_model(tiny_model).eval()
    texts, n_tokens = generate(model, tok, ["What is 1 + 1?", "Hi"], 3, 0.0, 1.0, 5, seed=0)
    one, n_one = generate(model, tok, ["What is 1 + 1?", "Hi"], 1, 0.0, 1.0, 5, seed=0)
    assert texts == [one[0]] * 3 + [one[1]] * 3 and n_tokens == 3 * n_one
