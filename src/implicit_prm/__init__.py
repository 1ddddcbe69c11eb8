"""implicit-prm: process reward models from outcome labels only (Yuan et al. 2024, arXiv 2412.01981).

Python API: `ImplicitPRM.from_pretrained(dir).score(prompt, steps)`; `load_scorer(dir, format="auto")` for any
scorer (an implicit PRM, a step-tag model trained here, or a released PRM/ORM: a ReadoutPRM); training:
`train(TrainConfig(...))`; scoring a file: `score(ScoreConfig(...))`; problems and grading: `load_problems`,
`grade`, `extract_answer`.

The package reads in pipeline order: core -> data -> models -> steps -> rewards/losses -> scoring -> training ->
collect -> eval -> search, serve (tests/test_layers.py holds the order).
"""
__version__ = "0.1.0"

# public name -> the module that defines it; imported on first use, so `import implicit_prm` stays fast
API = {
    "ImplicitPRM": "scoring.implicit",
    "ReadoutPRM": "scoring.readout",
    "load_scorer": "scoring.load",
    "ScorerSettings": "scoring.settings",
    "Scorer": "scoring.protocol",
    "LocalScorer": "scoring.protocol",
    "score": "scoring.score",
    "ScoreConfig": "scoring.score",
    "train": "training.loop",
    "TrainConfig": "training.config",
    "load_problems": "data.benchmarks",
    "grade": "data.grading",
    "extract_answer": "data.grading",
    "read_samples": "data.formats",
}
__all__ = sorted(API)


def __getattr__(name):
    if name in API:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{API[name]}"), name)
    raise AttributeError(f"module 'implicit_prm' has no attribute {name!r}")
