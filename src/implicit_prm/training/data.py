"""The data a training run reads, from one file: its samples encoded for the objective (a tag after each step and
a label per read position for the step objectives) and the objective's examples. Training and evaluation data go
through the same function."""
from __future__ import annotations

from dataclasses import dataclass

from .. import losses
from ..data import read_samples
from ..data.formats import Sample
from ..steps.encoding import Encoded, Encoder, encode_samples
from ..steps.tags import StepTag, encode_tagged_samples, resolve_tag
from .plan import Example, build_examples
from .targets import step_targets


@dataclass
class EncodedData:
    samples: list[Sample]
    encs: list[Encoded | None]
    examples: list[Example]
    stats: dict  # build_examples' counts (data_stats.json)
    tag: StepTag | None = None  # step objectives: the tag and +/- tokens
    targets: list[list[float] | None] | None = None  # step objectives: each response's label per read position


def encode_data(cfg, path, tok, tag: StepTag | None = None) -> EncodedData:
    """Read `path` as cfg reads its data (format, columns, labels required), encode it for cfg.objective (with
    `tag`, or the tag cfg names), and build the objective's examples."""
    samples = read_samples(path, cfg.step_separator, require_label=True, input_format=cfg.input_format,
                           columns=cfg.column_map, step_tag=None if cfg.step_tag == "auto" else cfg.step_tag)
    encoder = Encoder(tok, cfg.template, cfg.max_length, cfg.overlong, cfg.system_prompt)
    source = losses.LOSSES[cfg.objective].step_labels
    targets = None
    if source:  # a step objective: the tag after each step, and a label per read position
        tag = tag or resolve_tag(tok, cfg.step_tag, cfg.plus_token, cfg.minus_token)
        encs = encode_tagged_samples(encoder, samples, tag.tag_id, separator=cfg.step_separator)
        targets = step_targets(samples, encs, source)
    else:
        encs = encode_samples(encoder, samples, separator=cfg.step_separator)
    examples, stats = build_examples(samples, encs, losses.LOSSES[cfg.objective].paired, cfg.max_pairs_per_prompt,
                                     cfg.seed)
    return EncodedData(samples, encs, examples, stats, tag, targets)
