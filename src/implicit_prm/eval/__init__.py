"""Evaluation of scored responses: best-of-N, outcome AUROC, step errors (ProcessBench, PRMBench), the report, and the
FLOPs table."""
