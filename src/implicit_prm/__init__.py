"""implicit-prm: process reward models from outcome labels only (Yuan et al. 2024, arXiv 2412.01981).

Python API: `ImplicitPRM.from_pretrained(dir).score(prompt, steps)`; `load_scorer(dir, format="auto")` for any
scorer (an implicit PRM, a step-tag model trained here, or a released PRM/ORM: a ReadoutPRM); training: `implicit_prm.training.loop.train(TrainConfig(...))`.
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy, so `import implicit_prm` stays fast until the API is used
    if name == "ImplicitPRM":
        from .scoring.implicit import ImplicitPRM

        return ImplicitPRM
    if name == "load_scorer":
        from .scoring.load import load_scorer

        return load_scorer
    if name == "ReadoutPRM":
        from .scoring.readout import ReadoutPRM

        return ReadoutPRM
    raise AttributeError(name)
