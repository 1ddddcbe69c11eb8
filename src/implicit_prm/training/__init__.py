"""Training a PRM: its config (config.py), examples and the step plan (plan.py), step-tag targets (targets.py), the
one loop (loop.py), its log (log.py) and checkpoints (checkpoints.py)."""
