"""Where input records come from, in every form the field publishes them: `input_records(spec)` yields (line or
row, record) pairs from
  - a JSON array or JSONL file, also gzip-compressed (`.jsonl.gz`): the project's own strict reader, line numbers;
  - a `.parquet` file, a `datasets` `save_to_disk` folder (`DIR`, or `DIR@SPLIT` for a DatasetDict), a hub dataset
    `hf:OWNER/NAME[:CONFIG][@SPLIT]` (split `train` by default): read with `datasets`, numbered by row (1-based);
  - a benchmark name (`processbench:<split>`, below), from $IMPLICIT_PRM_DATA (a local folder in the shared data's
    layout) or the hub;
  - in the Python API, a `datasets.Dataset` or a list of dicts.
Errors name the file (or dataset), the line or row, and the field.

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


class RowNumber(int):
    """The 1-based row of a table (parquet, a datasets folder, a hub dataset, a list): errors say 'row 3'."""

    def __format__(self, spec: str) -> str:
        return f"row {int(self)}" if not spec else int.__format__(self, spec)

    __str__ = __repr__ = lambda self: f"row {int(self)}"  # noqa: E731


def _datasets(what: str = "reading parquet files, datasets folders and hub datasets"):
    """The `datasets` package (a declared dependency: only a broken install lacks it), or a UserError saying what
    needed it."""
    try:
        import datasets
    except ImportError:
        raise UserError(f"{what} needs the `datasets` package (pip install datasets)") from None
    return datasets


def table_rows(table, name: str) -> Iterator[tuple[int, dict]]:
    """(row, record) of a datasets.Dataset (or any iterable of mappings); a row that is not a mapping is an
    InputError."""
    for i, row in enumerate(table, start=1):
        if not isinstance(row, dict):
            raise InputError(name, RowNumber(i), None, f"expected a record (a mapping), found {type(row).__name__}")
        yield RowNumber(i), dict(row)


def hub_rows(name: str, config: str | None, split: str) -> Iterator[tuple[int, dict]]:
    """Rows of a Hugging Face hub dataset as (row, record); needs network access to the hub."""
    datasets = _datasets(f"loading {name} from the Hugging Face hub (with network access; or set ${DATA_ENV} to "
                         "a local data folder, or pass a local file)")
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 - network, auth and missing-split errors all mean the same to the user
        raise UserError(f"could not load hf:{name} ({config or 'default config'}, split {split}) from the Hugging "
                        f"Face hub (needs network access; or download it and pass the file or folder): "
                        f"{type(e).__name__}: {e}") from None
    return table_rows(ds, f"hf:{name}")


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """`hf:OWNER/NAME[:CONFIG][@SPLIT]` -> (OWNER/NAME, CONFIG or None, SPLIT, default 'train')."""
    body, _, split = spec[len("hf:"):].partition("@")
    name, _, config = body.partition(":")
    if name.count("/") != 1 or not all(name.split("/")):
        raise UserError(f"'{spec}': a hub dataset is hf:OWNER/NAME, optionally with :CONFIG and @SPLIT "
                        "(e.g. hf:trl-lib/math_shepherd@train)")
    return name, config or None, split or "train"


def disk_rows(path: Path, split: str | None) -> Iterator[tuple[int, dict]]:
    """Rows of a `save_to_disk` folder: a Dataset, or one split of a DatasetDict (`train` unless given)."""
    datasets = _datasets()
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - a folder datasets cannot read: say what it is
        raise InputError(path, None, None, f"a folder, but not one `datasets` saved (save_to_disk): "
                         f"{type(e).__name__}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        split = split or ("train" if "train" in ds else None)
        if split not in ds:
            raise InputError(path, None, None, f"holds the splits {', '.join(ds)}; pick one as {path}@SPLIT")
        ds = ds[split]
    elif split:
        raise InputError(path, None, None, f"holds one dataset, not splits; drop '@{split}'")
    return table_rows(ds, str(path))


def parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        ds = _datasets().Dataset.from_parquet(str(path), keep_in_memory=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or non-parquet file
        raise InputError(path, None, None, f"cannot read it as parquet: {type(e).__name__}: {e}") from None
    return table_rows(ds, str(path))


def benchmark_split(spec: str) -> str | None:
    """The ProcessBench split a name `processbench:<split>` asks for; None for anything else; UserError for a
    ProcessBench name with an unknown split."""
    name, sep, split = spec.partition(":")
    if name != "processbench" or not sep:
        return None
    if split not in PROCESSBENCH_SPLITS:
        raise UserError(f"'{spec}': ProcessBench has the splits {', '.join(PROCESSBENCH_SPLITS)}")
    return split


def _split_suffix(spec: str) -> tuple[Path, str | None]:
    """`DIR@SPLIT` -> (DIR, SPLIT) when DIR is a folder and the whole spec is not a file; else (spec, None)."""
    path = Path(spec)
    head, at, split = spec.rpartition("@")
    if at and head and not path.exists() and Path(head).is_dir():
        return Path(head), split
    return path, None


def source_name(spec) -> str:
    """How errors name an input: its path or name, or `<records>` / `<dataset NAME>` for Python objects."""
    if isinstance(spec, (str, os.PathLike)):
        return str(spec)
    if isinstance(spec, list):
        return "<records>"
    info = getattr(getattr(spec, "info", None), "dataset_name", None)
    return f"<dataset {info}>" if info else "<dataset>"


def input_source(spec: str | os.PathLike) -> str:
    """What `input_records(spec)` reads: the file or folder itself, the local ProcessBench file, or 'hf://...'."""
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


def input_records(spec) -> Iterator[tuple[int, dict]]:
    """(line or row, record) of any input form (see the module docstring)."""
    if not isinstance(spec, (str, os.PathLike)):  # the Python API: a datasets.Dataset or a list of dicts
        return table_rows(spec, source_name(spec))
    spec = str(spec)
    if spec.startswith("hf:"):
        return hub_rows(*parse_hub_spec(spec))
    source = input_source(spec)
    if source.startswith("hf://"):
        return hub_rows(PROCESSBENCH_HUB, None, source.rsplit("/", 1)[1])
    path, split = _split_suffix(source)
    if path.is_dir():
        return disk_rows(path, split)
    if not path.exists():
        raise InputError(source, None, None, "file not found (or give a .json/.jsonl(.gz)/.parquet file, a "
                         "datasets folder, hf:OWNER/NAME, or a benchmark name: "
                         + ", ".join(f"processbench:{s}" for s in PROCESSBENCH_SPLITS) + ")")
    if path.suffix == ".parquet":
        return parquet_rows(path)
    return read_json_records(path)
