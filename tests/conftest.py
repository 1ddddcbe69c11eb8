"""Shared fixtures: tiny random Llama models with the real SmolLM2 tokenizer, and small data files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def smol_tokenizer_dir() -> str:
    """The embedded model converted once into the user cache; tests only use its tokenizer (49k vocab)."""
    from implicit_prm.models import resolve

    return resolve("smollm2-135m")


def make_tiny(path: Path, tokenizer_dir: str, seed: int, hidden: int = 16, layers: int = 2) -> str:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2,
                      max_position_embeddings=1024, tie_word_embeddings=False, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # spread logits so log-probs differ visibly between models
        model.lm_head.weight.normal_(0, 0.5)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smol_tokenizer_dir) -> str:
    return make_tiny(tmp_path_factory.mktemp("tiny_a"), smol_tokenizer_dir, seed=1)


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory, smol_tokenizer_dir) -> str:
    """A second tiny model with the same tokenizer and different weights (a 'trained' PRM vs its reference)."""
    return make_tiny(tmp_path_factory.mktemp("tiny_b"), smol_tokenizer_dir, seed=2)


@pytest.fixture
def builtin_data(tmp_path) -> Path:
    from implicit_prm.data.builtin import BuiltinDataConfig, write_builtin

    path = tmp_path / "train.jsonl"
    write_builtin(BuiltinDataConfig(output=str(path), n_problems=12, samples_per_problem=2, seed=3))
    return path


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("ACCELERATE_DISABLE_RICH", "1")
