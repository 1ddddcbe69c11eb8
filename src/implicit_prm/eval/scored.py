"""Scored files for the evaluations: score once (a finished output is kept), and merge several sources' scores."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from ..core.io import write_jsonl
from ..core.results import config_path
from ..data.sources import input_records
from ..scoring.score import ScoreConfig, score  # the model stack, only when there is something to score

ALIGN_FIELDS = ("prompt", "problem", "response", "steps")  # equal in records scored from the same input record


def score_once(prm: str, data: str | Path, out: str | Path, **kw) -> Path:
    """Score `data` with `prm` into `out` (other ScoreConfig fields in kw), unless `out` is already finished:
    there with its config beside it (score writes the config last)."""
    out = Path(out)
    if out.exists() and config_path(out).exists():
        return out

    return score(ScoreConfig(input=str(data), output=str(out), prm=str(prm), **kw))


def merge_scored(files: dict[str, Path], out: Path) -> Path:
    """One file whose `scores` nest each source's scores under its name, {source: {agg: x}} (bon's nested form),
    and `reward_schema` each source's schema, {source: schema}; every other field comes from the first file.

    The files must hold the same responses in the same order (scored from one input): InputError naming the file
    and line of the first record that differs from the first file's, or a file with another number of records.
    """
    rows = {name: list(input_records(path)) for name, path in files.items()}
    path0, first = next(iter(files.values())), next(iter(rows.values()))
    for name, path in files.items():
        if len(rows[name]) != len(first):
            raise InputError(path, None, None, f"has {len(rows[name])} records but {path0} has {len(first)}; the "
                                               "scored files are not aligned (score the same input)")
        for (line, rec), (line0, rec0) in zip(rows[name], first):
            key = next((k for k in ALIGN_FIELDS if rec.get(k) != rec0.get(k)), None)
            if key is not None:
                raise InputError(path, line, key, f"differs from {path0}:{line0}; the scored files are not aligned "
                                                  "(score the same input)")
            if "scores" not in rec:
                raise InputError(path, line, "scores", "missing; score the responses first (`implicit-prm score`)")
    merged = []
    for i, (_, rec0) in enumerate(first):
        rec = {**rec0, "scores": {name: rows[name][i][1]["scores"] for name in files}}
        schemas = {name: rows[name][i][1].get("reward_schema") for name in files}
        rec.pop("reward_schema", None)
        if any(v is not None for v in schemas.values()):
            rec["reward_schema"] = schemas
        merged.append(rec)
    write_jsonl(out, merged)
    return out
