"""What a trained PRM records about itself (`implicit_prm.json` beside the weights): one typed dataclass, read and
written here only."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.config import field, from_mapping
from ..core.errors import InputError
from ..core.io import read_json_file, write_json

METADATA_FILE = "implicit_prm.json"


@dataclass
class PRMMetadata:
    """Every field is read back when scoring. Those marked informational are shown (`describe`, and a note when the
    precision differs) but change nothing: scoring keeps its own setting, since applying the training one would
    change what a score run does today."""

    beta: float = field(help="reward scale of training: the default beta when scoring")
    reference_model: str = field(help="reference of training: the default reference when scoring")
    base_model: str = field(help="the starting model: the base that a LoRA adapter loads onto")
    reference_fingerprint: str = field("", help="the reference weights' fingerprint: scoring warns when its "
                                                "reference differs")
    template: str = field("auto", help="prompt format of training: the default when scoring")
    system_prompt: Optional[str] = field(None, help="system message of training: the default when scoring")
    objective: str = field("", help="informational: the training objective")
    lora: bool = field(False, help="informational: whether the weights are a LoRA adapter (the files say so too)")
    precision: str = field("", help="informational: precision of training; scoring notes when its own differs")
    step_separator: str = field("\n\n", help="informational: joined pre-split training steps (score has "
                                             "--step-separator)")
    max_length: int = field(0, help="informational: training's token limit (score has --max-length)")
    kind: str = field("implicit", help="what the model scores with: 'implicit' (beta * log-ratio step rewards) or "
                                       "'step_tag' (P(+) at a tag after each step: steps/tags.py)")
    step_tag: str = field("", help="step_tag: the tag token after each step")
    plus_token: str = field("+", help="step_tag: the token whose probability at a tag is the step's score")
    minus_token: str = field("-", help="step_tag: the token against it")
    boundary0: bool = field(False, help="step_tag: also read at the prompt's end (an outcome verifier's start "
                                        "value)")

    def describe(self) -> str:
        if self.kind == "step_tag":
            return (f"step-tag scorer ({self.objective or 'unknown'} objective, tag {self.step_tag!r}, P({self.plus_token!r}) "
                    f"against {self.minus_token!r}), {'LoRA adapter' if self.lora else 'full'}, trained in "
                    f"{self.precision or 'unknown precision'}")
        return (f"{self.objective or 'unknown'} objective, beta {self.beta}, {'LoRA adapter' if self.lora else 'full'}"
                f", trained in {self.precision or 'unknown precision'} with max_length {self.max_length} and steps "
                f"joined by {self.step_separator!r}")


def read_metadata(model_dir: str | Path) -> PRMMetadata | None:
    """The metadata of a trained PRM directory; None for a directory without it (any causal LM, an adapter)."""
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        return None
    data = read_json_file(path)
    known = {f.name for f in dataclasses.fields(PRMMetadata)}
    if not isinstance(data, dict):
        raise InputError(path, None, None, "expected a JSON object")
    return from_mapping(PRMMetadata, {k: v for k, v in data.items() if k in known}, source=str(path))


def write_metadata(model_dir: str | Path, meta: PRMMetadata) -> None:
    write_json(Path(model_dir) / METADATA_FILE, dataclasses.asdict(meta))
