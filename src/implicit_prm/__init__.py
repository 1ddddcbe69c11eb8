"""implicit-prm: process reward models from outcome labels only (Yuan et al. 2024, arXiv 2412.01981).

Python API: `ImplicitPRM.from_pretrained(dir).score(prompt, steps)`; `load_scorer(dir)` for any model trained here
(an implicit PRM, or a step-tag baseline: a StepTagPRM); training: `implicit_prm.train.train(TrainConfig(...))`.
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy, so `import implicit_prm` stays fast until the API is used
    if name == "ImplicitPRM":
        from .prm import ImplicitPRM

        return ImplicitPRM
    if name in ("StepTagPRM", "load_scorer"):
        from . import step_prm

        return getattr(step_prm, name)
    raise AttributeError(name)
