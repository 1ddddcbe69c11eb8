"""Input data: the input formats and their validation, benchmark problem sets, answer grading, training pairs, and
the built-in arithmetic problems with their simulated solvers (no model runs here)."""
from .formats import Sample, group_by_prompt, read_samples
from .pairs import PairStats, build_pairs, unpaired

__all__ = ["PairStats", "Sample", "build_pairs", "group_by_prompt", "read_samples", "unpaired"]
