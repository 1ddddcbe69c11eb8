"""Evaluation: outcome metrics now; grading, best-of-N and step-error detection build on them."""
