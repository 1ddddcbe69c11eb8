"""From text to token positions: step splitting (splitting.py), encoding prompt and response with each token's step
(encoding.py), the step-tag encoding of the baselines (tags.py) and length-bucketed batch plans (batching.py)."""
