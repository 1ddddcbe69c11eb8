"""A frozen PRM as a sequence-level reward for plain GRPO (or any trainer with TRL's `reward_funcs` signature).

    from trl import GRPOTrainer
    from implicit_prm.rl.reward import PRMReward
    trainer = GRPOTrainer(model=..., reward_funcs=[PRMReward("runs/prm"), accuracy], ...)

Each completion is scored as `implicit-prm score` scores a response: the PRM's own chat template (and system
prompt, from its `implicit_prm.json`) is applied to the prompt, the completion is split into steps (`split`,
default `auto`; a blank line with the default separator), and the reward is the aggregation `agg` of its step
rewards (`min`, the paper's choice, by default; `last`, `sum` or `mean`; a probability-scale PRM also has
`prod`). Prompts come as text (the problem's text,
not a prompt already rendered with a template) or, as TRL's conversational format gives them, a list with one
user message; completions as text or assistant messages. Any scorer format works (`load_scorer`: implicit,
released PRMs, ORMs), or a scorer object. No online updates: PRIME (`implicit-prm rl`) updates the PRM as it goes.

A policy may end a sample at once: an empty completion has no step to score and gets `empty` (None by default,
which TRL reads as "this function does not score this sample": it adds nothing to the sample's reward; give a
number, e.g. the lowest reward you expect, to penalise it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..data.formats import Sample
from ..data.trl_formats import completion_text, prompt_text
from ..scoring.load import load_scorer

SOURCE = "<reward_funcs>"


class PRMReward:
    """A TRL reward function: `reward(prompts, completions, **kwargs) -> list[float]`, one score per completion."""

    def __init__(self, scorer: Any, agg: str = "min", split: str = "auto", separator: str = "\n\n",
                 empty: float | None = None, **settings):
        self.scorer = load_scorer(str(scorer), "auto", **settings) if isinstance(scorer, (str, Path)) else scorer
        self.agg, self.split, self.separator, self.empty = agg, split, separator, empty
        self.__name__ = f"prm_{agg}"  # TRL logs each reward function under its __name__

    def samples(self, prompts: Sequence, completions: Sequence) -> list[Sample | None]:
        """One Sample per completion; None for an empty one (nothing to score)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        texts = [completion_text(SOURCE, i + 1, "completions", c, allow_empty=True) for i, c in enumerate(completions)]
        return [Sample.api(prompt_text(SOURCE, i + 1, "prompts", p), t, source=(SOURCE, i + 1)) if t.strip() else None
                for i, (p, t) in enumerate(zip(prompts, texts))]

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float | None]:
        samples = self.samples(prompts, completions)
        kept = [s for s in samples if s is not None]
        records = iter(self.scorer.score_samples(kept, self.split, separator=self.separator) if kept else [])
        out = []
        for s in samples:
            if s is None:
                out.append(self.empty)
                continue
            r = next(records)
            if self.agg not in r["scores"]:
                raise ValueError(f"agg {self.agg!r}: this scorer's scores are {', '.join(r['scores'])}")
            out.append(float(r["scores"][self.agg]))
        return out
