"""Foundations every layer uses: typed configs (config.py), user-facing errors (errors.py), atomic file io and
JSONL with line numbers (io.py), input validation helpers (validation.py), resuming killed runs (resume.py),
outputs written with their config (results.py), precision choice (precision.py) and the process group (distributed.py)."""
