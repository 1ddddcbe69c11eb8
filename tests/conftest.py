"""Shared fixtures: tiny random Llama models with the real SmolLM2 tokenizer, and small data files.

Hypothesis settings: every property runs without a deadline; HYPOTHESIS_PROFILE=ci (set by .ci/run) also fixes
the examples (derandomize), so CI reruns the same cases, while local runs keep exploring new ones.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SMOL = "smollm2-135m"

# failing examples are kept under .pytest_cache (git-ignored) and replayed first on the next local run
settings.register_profile("dev", deadline=None,
                          database=DirectoryBasedExampleDatabase(ROOT / ".pytest_cache" / "hypothesis"))
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> str:
    """A directory with the real SmolLM2-135M tokenizer (49k vocab, chat template); tests use only the tokenizer.

    The embedded model as converted into the cache by an earlier run when it is there; else the tokenizer alone,
    read from the GGUF file's metadata (no dequantizing of the weights: ~5 s and ~0.4 GB instead of ~16 s and
    ~1.5 GB) and saved once per session. It is the same tokenizer either way: the conversion reads it the same way.
    """
    from transformers import AutoTokenizer

    from implicit_prm.models.loading import _embedded_gguf, cache_root

    converted = cache_root() / "models" / SMOL
    if (converted / "config.json").exists():  # written last by models.convert_gguf (an atomic rename)
        return str(converted)
    gguf = _embedded_gguf(SMOL)
    out = tmp_path_factory.mktemp("smol_tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def smol_tokenizer(smol_tokenizer_dir):
    """The real SmolLM2 tokenizer, loaded once (treat it as read-only)."""
    return _tokenizer(smol_tokenizer_dir)


@functools.lru_cache(maxsize=None)
def _tokenizer(tokenizer_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def make_tiny(path: Path, tokenizer_dir: str, seed: int, hidden: int = 16, layers: int = 2) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer(str(tokenizer_dir))
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
    from implicit_prm.collect.builtin import write_builtin
    from implicit_prm.data.builtin import BuiltinDataConfig

    path = tmp_path / "train.jsonl"
    write_builtin(BuiltinDataConfig(output=str(path), n_problems=12, samples_per_problem=2, seed=3))
    return path


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("ACCELERATE_DISABLE_RICH", "1")
