"""Evaluation of scored responses: best-of-N, outcome AUROC, step errors (ProcessBench), grading, the report."""
