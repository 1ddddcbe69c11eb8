"""What a scorer is, written down once: `Scorer` (scores whole responses given as text; the HTTP client is one)
and `LocalScorer` (its model runs here: it encodes responses and scores encoded ones through the forward loop;
`ImplicitPRM` and `ReadoutPRM` are the two). Callers read these members, never probe attributes."""
from __future__ import annotations

import abc
from typing import Callable, Protocol, Sequence

from ..core.distributed import ProcessGroup
from ..data.formats import Sample
from ..flops.counting import ModelShape
from ..steps.encoding import Encoded


class Scorer(Protocol):
    """Any scorer: `format` says how it scores ('implicit', a released format, or 'remote')."""

    format: str

    def score_samples(self, samples: Sequence[Sample], split: str = "auto", step_regex: str | None = None,
                      separator: str = "\n\n") -> list[dict]:
        """One record (step_rewards, q_values, scores, reward_schema) per sample, in order."""
        ...

    def score(self, prompt: str, steps: list[str] | str, separator: str = "\n\n", split: str = "auto") -> dict:
        """Score one response given as a list of steps (or a string, split by `split`)."""
        ...


class LocalScorer(abc.ABC):
    """A scorer whose model runs in this process. Subclasses give the model-specific members; the text-level
    methods (`score_samples`, `score`) are written once here, over `encode` and `score_encoded`."""

    format: str
    tok: object  # the tokenizer
    precision: str  # 'bf16' or 'fp32', resolved for its device
    name: str  # the checkpoint it was loaded from (the FLOPs ledger's model name)

    @property
    @abc.abstractmethod
    def schema(self) -> dict:
        """The reward_schema its records carry: what the numbers are (scoring/schema.py)."""

    @property
    @abc.abstractmethod
    def reference(self) -> str | None:
        """The reference model it runs beside its own for every response (implicit PRMs), else None."""

    @property
    @abc.abstractmethod
    def own_key(self) -> str:
        """Its cache key: the weights' fingerprint (adapters included), precision and what it reads."""

    @property
    @abc.abstractmethod
    def lora(self) -> bool:
        """Whether its weights are a LoRA adapter (the FLOPs ledger records it)."""

    @property
    @abc.abstractmethod
    def flops_shape(self) -> ModelShape:
        """The FLOPs shape of the model it runs per sequence (flops/counting.py)."""

    @abc.abstractmethod
    def resolved_settings(self) -> dict:
        """The settings it resolved from the checkpoint (beta, template, ...), as config field -> value: a run
        records them in its saved config."""

    @abc.abstractmethod
    def encode(self, samples: Sequence[Sample], split: str = "auto", step_regex: str | None = None,
               separator: str = "\n\n") -> list[Encoded | None]:
        """Encode samples (None marks one skipped as overlong); errors name the sample's file and line."""

    @abc.abstractmethod
    def score_encoded(self, encs: Sequence[Encoded], acc: ProcessGroup | None = None, show: bool = False,
                      token_rewards: bool = False,
                      on_record: Callable[[int, dict], None] | None = None) -> list[dict | None]:
        """Records of every response this process scores (None for other processes' share); `on_record(i, rec)`
        sees each as it is finished."""

    def score_samples(self, samples: Sequence[Sample], split: str = "auto", step_regex: str | None = None,
                      separator: str = "\n\n") -> list[dict]:
        return self.score_encoded(self.encode(samples, split, step_regex, separator))

    def score(self, prompt: str, steps: list[str] | str, separator: str = "\n\n", split: str = "auto") -> dict:
        if isinstance(steps, str):
            sample = Sample.api(prompt, steps)
        else:
            sample = Sample.api(prompt, separator.join(steps), list(steps))
        return self.score_samples([sample], split, separator=separator)[0]
