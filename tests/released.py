"""Tiny random checkpoints in the exact layout of each released PRM family (weights cannot be downloaded here):
their real special tokens, chat templates and heads, saved as a user would find them on the hub.

- math_shepherd: a Mistral-style sentencepiece BPE (Metaspace: a word-initial '▁', BOS added), where "ки", "+" and
  "-" after a space are the tokens '▁ки', '▁+', '▁-' (a bare '+' inside "2+3" is another token).
- rlhflow: a byte-level BPE (SmolLM2's) with Llama 3.1's special tokens and chat template, whose default system
  turn writes "Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024".
- qwen_prm: Qwen2.5's chat template (default system "You are Qwen, ..."), the added token <extra_0>, and a local
  modeling_qwen2_rm.py registered through auto_map, shaped like Qwen2ForProcessRewardModel.
- skywork_orm: a 1-label LlamaForSequenceClassification with the Llama 3.1 tokenizer above.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

LLAMA31_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN_RM_MODELING = '''
"""A tiny stand-in for Qwen2.5-Math-PRM's modeling_qwen2_rm.py: a Qwen2 body and a 2-label MLP head per token."""
from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(),
                                   nn.Linear(config.hidden_size, self.num_labels))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SequenceClassifierOutputWithPast(logits=self.score(hidden))
'''

CHARS = [chr(c) for c in range(33, 127)] + ["к", "и", "\n"]


def sentencepiece_tokenizer():
    """A Mistral/Llama-style tokenizer: BPE over characters after a Metaspace pre-tokenizer, BOS <s> added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    merged = ["▁к", "▁ки", "▁+", "▁-", "▁S", "▁St", "▁Ste", "▁Step"]
    vocab = {t: i for i, t in enumerate(specials + ["▁"] + CHARS + merged)}
    merges = [("▁", "к"), ("▁к", "и"), ("▁", "+"), ("▁", "-"), ("▁", "S"), ("▁S", "t"), ("▁St", "e"), ("▁Ste", "p")]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def _llama(vocab: int, pad_id: int, seed: int, cls_name: str = "LlamaForCausalLM", **extra):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                   max_position_embeddings=2048, tie_word_embeddings=False, pad_token_id=pad_id,
                                   **extra)
    model = getattr(transformers, cls_name)(cfg)
    with torch.no_grad():  # spread the outputs so that probabilities differ visibly
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
    return model


def math_shepherd(path: Path) -> str:
    tok = sentencepiece_tokenizer()
    _llama(len(tok), tok.pad_token_id, seed=11).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def llama31_tokenizer(smol_dir: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "additional_special_tokens": [
        "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = LLAMA31_TEMPLATE
    return tok


def rlhflow(path: Path, smol_dir: str) -> str:
    tok = llama31_tokenizer(smol_dir)
    _llama(len(tok), tok.pad_token_id, seed=12).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def skywork_orm(path: Path, smol_dir: str, labels: int = 1) -> str:
    tok = llama31_tokenizer(smol_dir)
    _llama(len(tok), tok.pad_token_id, seed=13, cls_name="LlamaForSequenceClassification",
           num_labels=labels).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def qwen_prm(path: Path, smol_dir: str) -> str:
    """The Qwen layout: config.json names Qwen2ForProcessRewardModel and maps AutoModel to the shipped file."""
    import importlib.util

    from transformers import AutoTokenizer, Qwen2Config

    path.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(smol_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    tok.chat_template = QWEN25_TEMPLATE
    (path / "modeling_qwen2_rm.py").write_text(QWEN_RM_MODELING)
    spec = importlib.util.spec_from_file_location("tiny_qwen2_rm", path / "modeling_qwen2_rm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(14)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    model = module.Qwen2ForProcessRewardModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["Qwen2ForProcessRewardModel"]
    config["auto_map"] = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return str(path)
