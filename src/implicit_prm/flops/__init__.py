"""FLOPs counting, the low leaf that data, training, scoring and search record into: counting.py (a model's shape,
FLOPs per token by mode), ledger.py (what a command ran, by kind and phase, on disk), paper.py (the paper's analytic
comparison). The `implicit-prm flops` verb that sums ledgers lives in eval/flops.py."""
