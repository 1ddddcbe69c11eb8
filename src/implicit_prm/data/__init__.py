"""Input data: reading and validating the three input formats, and building training examples from them."""
from .formats import Sample, group_by_prompt, read_samples
from .pairs import PairStats, build_pairs, unpaired

__all__ = ["PairStats", "Sample", "build_pairs", "group_by_prompt", "read_samples", "unpaired"]
