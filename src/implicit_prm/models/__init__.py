"""Models: loading (hub id, local dir, GGUF, the embedded default, LoRA; loading.py), what a trained PRM records
(metadata.py), the chat template (chat.py), sampling (generation.py), chunked per-token log-probs (logprobs.py) and
the value heads that read one position per step (heads.py)."""
