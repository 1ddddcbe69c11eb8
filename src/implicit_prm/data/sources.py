"""Where named data comes from: $IMPLICIT_PRM_DATA (a local folder in the shared data's layout) or the Hugging Face
hub; and `input_records`, which reads a file or a benchmark name (`processbench:<split>`) as (line, record) pairs.

ProcessBench (Zheng et al. 2024, arXiv 2412.06559; hub Qwen/ProcessBench) has four splits, each a JSON array of
{id, generator, problem, steps, final_answer_correct, label}: gsm8k (400), math (1000), olympiadbench (1000),
omnimath (500). `processbench:<split>` reads $IMPLICIT_PRM_DATA/processbench/<split>.json, else the hub split.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ..core.errors import InputError, UserError
from ..core.io import read_json_records

DATA_ENV = "IMPLICIT_PRM_DATA"
PROCESSBENCH_SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
PROCESSBENCH_HUB = "Qwen/ProcessBench"


def data_dir() -> Path | None:
    """The local data folder from $IMPLICIT_PRM_DATA, or None."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def hub_rows(name: str, config: str | None, split: str) -> Iterator[tuple[int, dict]]:
    """Rows of a Hugging Face hub dataset as (row number, record); needs the `datasets` package and network."""
    try:
        import datasets
    except ImportError:
        raise UserError(f"loading {name} from the Hugging Face hub needs the `datasets` package "
                        f"(pip install datasets) and network access; or set ${DATA_ENV} to a local data folder, "
                        "or pass a local file") from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 - network, auth and missing-split errors all mean the same to the user
        raise UserError(f"could not load {name} ({config or 'default'}, split {split}) from the Hugging Face hub "
                        f"(needs network access): {type(e).__name__}: {e}") from None
    for i, row in enumerate(ds, start=1):
        yield i, dict(row)


def benchmark_split(spec: str) -> str | None:
    """The ProcessBench split a name `processbench:<split>` asks for; None for anything else; UserError for a
    ProcessBench name with an unknown split."""
    name, sep, split = spec.partition(":")
    if name != "processbench" or not sep:
        return None
    if split not in PROCESSBENCH_SPLITS:
        raise UserError(f"'{spec}': ProcessBench has the splits {', '.join(PROCESSBENCH_SPLITS)}")
    return split


def input_source(spec: str | os.PathLike) -> str:
    """What `input_records(spec)` reads: the file itself, the local ProcessBench file, or 'hf://...'."""
    split = None if Path(spec).exists() else benchmark_split(str(spec))
    if split is None:
        return str(spec)
    root = data_dir()
    if root is not None:
        path = root / "processbench" / f"{split}.json"
        if not path.is_file():
            raise UserError(f"{spec}: {path} not found (${DATA_ENV}={root}; expected processbench/{split}.json)")
        return str(path)
    return f"hf://{PROCESSBENCH_HUB}/{split}"


def input_records(spec: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line, record) of a JSONL/JSON file, or of a benchmark name (see the module docstring)."""
    source = input_source(spec)
    if source.startswith("hf://"):
        return hub_rows(PROCESSBENCH_HUB, None, source.rsplit("/", 1)[1])
    if not Path(source).exists():
        raise InputError(source, None, None, "file not found (or give a benchmark name: "
                         + ", ".join(f"processbench:{s}" for s in PROCESSBENCH_SPLITS) + ")")
    return read_json_records(source)
