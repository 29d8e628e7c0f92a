"""A shard folder's datasets as JSON (`datasets.json`): data, never code.

Each split's folder dataset is written as its class path and its settings (the instance's
attributes; its file list holds one entry, to tell the entries' kind). Reading builds only the
classes of `i2i.safe_load.SHARD_CLASSES` and sets their attributes: no constructor runs (it
would scan folders the reading machine lacks) and nothing is unpickled. Values are JSON
numbers, strings, lists and null, and these tagged objects:
{"path": str}, {"tuple": [...]}, {"set": [...]}, {"dict": [[key, value], ...]},
{"array": nested lists, "dtype": str}, {"class": path, "items": [...]} (a NamedTuple) and
{"class": path, "fields": {...}} (a dataclass).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from i2i.errors import DataError, RefusedFileError
from i2i.safe_load import shard_class

FORMAT = 1
_DTYPES = frozenset({"uint8", "int16", "int32", "int64", "float32", "float64", "bool"})


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, PurePath):
        return {"path": str(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"class": _class_path(value), "items": [_encode(v, where) for v in value]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, set | frozenset):
        return {"set": [_encode(v, where) for v in sorted(value, key=repr)]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    if isinstance(value, np.ndarray) and value.dtype.name in _DTYPES:
        return {"array": value.tolist(), "dtype": value.dtype.name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name), where) for f in dataclasses.fields(value)}
        return {"class": _class_path(value), "fields": fields}
    raise TypeError(f"{where}: a {type(value).__name__} cannot be described in datasets.json")


def encode(datasets: dict[str, Dataset]) -> str:
    """datasets.json for the template datasets: each one's class and attributes as data.

    Args:
        datasets: {split: template dataset}.

    Raises:
        TypeError: an attribute of a kind datasets.json cannot describe.
    """
    out = {}
    for split, dataset in datasets.items():
        state = {k: _encode(v, f"{split}.{k}") for k, v in vars(dataset).items()}
        out[split] = {"class": _class_path(dataset), "state": state}
    return json.dumps({"format": FORMAT, "datasets": out}, indent=1) + "\n"


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "path" in value:
        return Path(value["path"])
    if "tuple" in value:
        return tuple(_decode(v, where) for v in value["tuple"])
    if "set" in value:
        return {_decode(v, where) for v in value["set"]}
    if "dict" in value:
        return {_decode(k, where): _decode(v, where) for k, v in value["dict"]}
    if "array" in value:
        if value.get("dtype") not in _DTYPES:
            raise RefusedFileError(f"{where}: an array of dtype {value.get('dtype')!r}")
        return np.asarray(value["array"], dtype=value["dtype"])
    if "class" in value:
        cls = shard_class(value["class"], where)
        if "items" in value and hasattr(cls, "_fields"):
            return cls(*(_decode(v, where) for v in value["items"]))
        if "fields" in value and dataclasses.is_dataclass(cls):
            return cls(**{k: _decode(v, where) for k, v in value["fields"].items()})
    raise RefusedFileError(f"{where}: an entry this i2i cannot read ({json.dumps(value)[:80]})")


def decode(text: str | bytes, where: str) -> dict[str, Dataset]:
    """{split: template dataset} from datasets.json, built without their constructors.

    Args:
        text: the file's content.
        where: the file, named in errors.

    Raises:
        RefusedFileError: a class outside the allow-list (naming the file and the class), or an
            entry this i2i cannot read.
        DataError: (a ValueError) a file that is not ours, or of a newer format.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise DataError(f"{where} is not a datasets.json of i2i data optimize")
    if int(data.get("format", 0)) > FORMAT:
        raise DataError(f"{where} has format {data['format']}; this i2i reads up to {FORMAT}")
    datasets = {}
    for split, entry in data["datasets"].items():
        cls = shard_class(entry.get("class"), where)
        dataset = cls.__new__(cls)  # no constructor: it would scan folders absent here
        dataset.__dict__.update(
            {k: _decode(v, where) for k, v in (entry.get("state") or {}).items()}
        )
        datasets[split] = dataset
    return datasets
