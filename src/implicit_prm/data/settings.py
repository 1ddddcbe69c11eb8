"""`InputSettings`: how a command reads its input records, the group every command with an input file shares:
the format (`--input-format`, default auto-detected per record) and field renames (`--columns OURS=THEIRS`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.config import field
from ..core.errors import ConfigError

InputFormat = Literal["auto", "rollouts", "flat", "presplit", "prmbench", "math-shepherd-data", "prm800k",
                      "trl-stepwise", "trl-preference", "trl-unpaired", "openrlhf-prm"]


@dataclass(kw_only=True)
class InputSettings:
    input_format: InputFormat = field(
        "auto", help="the input records' format: auto (detected per record by its fields; a record that fits two "
                     "is refused), or rollouts, flat, presplit, prmbench, math-shepherd-data, prm800k, trl-stepwise, "
                     "trl-preference, trl-unpaired, openrlhf-prm")
    columns: list[str] = field([], help="OURS=THEIRS field renames applied to every input record first, e.g. "
                                        "label=value prompt=question")

    @property
    def column_map(self) -> dict[str, str]:
        """--columns as {ours: theirs}; a malformed entry is a ConfigError naming it."""
        out = {}
        for item in self.columns:
            ours, eq, theirs = item.partition("=")
            if not eq or not ours.strip() or not theirs.strip():
                raise ConfigError(f"field 'columns': {item!r} is not OURS=THEIRS (e.g. label=value)")
            out[ours.strip()] = theirs.strip()
        return out
