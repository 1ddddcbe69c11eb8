"""Step-level search guided by a PRM: strategies.py (best-of-n, beam, DVTS over any policy and scorer),
scoring.py (incremental implicit scoring over KV caches; whole-text re-scoring for any format), policies.py (an
HF causal LM, or the built-in simulated solver), run.py (the `implicit-prm search` command)."""
