"""Data collection, which runs models and grades: rollouts (rollout.py), grading a file (grade.py), the built-in data
verb (builtin.py), Monte-Carlo step labels (mc_labels.py, completers.py), AutoPSV labels (autopsv.py), and ledgers for
text no model generated (simulated.py)."""
