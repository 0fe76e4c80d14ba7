"""What a captured value is, in PROV-ML terms: data, a hyperparameter, an algorithm…

Runs on the exporter thread: file and array digests happen here, never on the caller's
thread. The caller's thread keeps a reference (a path, an array), so content changed in
place between the call and the export (at most ``schedule_delay``, normally) is what
gets digested; bytes are immutable and unaffected.

numpy, pandas, scikit-learn and PyTorch objects are recognised by duck typing (type
names and methods); none of those libraries is imported here — a value of theirs can
only exist if the user's code already imported them.

Imports: standard library, ``provml.ids`` and the digest cache.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from stat import S_ISDIR
from typing import Any

from provml import ids
from provml.capture._digest_cache import DigestCache, Key, default_path, key_of
from provml.capture._state import log_once

#: Containers up to this many items (and this much JSON) are recorded as one value.
_SMALL_CONTAINER = 64
_SMALL_JSON = 4096


@dataclass(frozen=True, slots=True)
class DataReference:
    """Data that lives elsewhere, named by its address inside a data store (as ProvLake does).

    ``provml.used(DataReference("lustre:/proj/seismic", "cubes/2019/A.segy"))`` — the
    same store and reference give the same entity in every process.
    """

    data_store: str
    reference: str


@dataclass(slots=True)
class Data:
    """A data entity: identity by content digest or by reference."""

    iri: str
    ml_class: str
    attributes: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    location: str | None = None  # where this process saw it (put on the usage/generation)


@dataclass(slots=True)
class Param:
    """A hyperparameter setting."""

    name: str
    lexical: str
    value_type: str


@dataclass(slots=True)
class Opaque:
    """A value we cannot describe: recorded by its type name."""

    name: str
    type_name: str


@dataclass(slots=True)
class Algorithm:
    """A framework model object (a PyTorch module, an estimator without params)."""

    name: str
    type_name: str
    parameter_count: int | None


Description = Data | Param | Opaque | Algorithm


def type_name(value: Any) -> str:
    cls = type(value)
    module = getattr(cls, "__module__", "")
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _module_root(value: Any) -> str:
    return (getattr(type(value), "__module__", "") or "").partition(".")[0]


def is_estimator(value: Any) -> bool:
    """A scikit-learn style estimator: ``get_params`` and ``fit`` (the sklearn protocol)."""
    return (
        not isinstance(value, type)
        and callable(getattr(value, "get_params", None))
        and (callable(getattr(value, "fit", None)))
    )


def is_torch_module(value: Any) -> bool:
    return (
        not isinstance(value, type)
        and callable(getattr(value, "parameters", None))
        and callable(getattr(value, "state_dict", None))
    )


def is_array(value: Any) -> bool:
    # ndim > 0: numpy scalars have a dtype and shape too, and are hyperparameter values.
    return (
        _module_root(value) == "numpy"
        and getattr(value, "ndim", 0) > 0
        and callable(getattr(value, "tobytes", None))
    )


def is_frame(value: Any) -> bool:
    return _module_root(value) == "pandas" and type(value).__name__ in ("DataFrame", "Series")


def is_data_like(value: Any) -> bool:
    """Values that are data whether or not the user declared them as such."""
    return isinstance(value, bytes | bytearray | memoryview | PurePath | DataReference) or (
        is_array(value) or is_frame(value)
    )


# --------------------------------------------------------------------- digests


class Digests:
    """Content digests with a cache, so a file used every epoch (or every job) is read once."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._files: dict[Key, tuple[str, bool]] = {}
        self._iris: dict[str, str] = {}  # by digest: a file used every epoch has one IRI
        self._known = DigestCache(default_path())  # digests earlier processes made
        self.host = socket.gethostname()

    def _data_iri(self, digest: str) -> str:
        iri = self._iris.get(digest)
        if iri is None:
            if len(self._iris) > 10_000:
                self._iris.clear()
            iri = self._iris[digest] = ids.data_iri(digest, base=self.base)
        return iri

    def path(self, value: str | os.PathLike[str], ml_class: str | None) -> Data:
        # os.path and one os.stat: this runs for every file a stage uses or generates.
        path = os.path.abspath(os.fsdecode(os.fspath(value)))
        try:
            stat = os.stat(path)
        except OSError:
            # Not there (yet, or any more): known by reference to this host's file system.
            log_once(
                f"missing:{path}",
                "provml capture: %s does not exist; recorded by reference, not by content",
                path,
                level=20,
            )
            return self.reference(DataReference(f"file://{self.host}", path), ml_class)
        if S_ISDIR(stat.st_mode):
            digest, sampled = ids.digest_directory(path)
            size = None
        else:
            key = key_of(path, stat)
            cached = self._files.get(key)
            if cached is None:
                cached = self._known.get(key)
                if cached is None:
                    cached = ids.digest_file(path, stat.st_size)
                    self._known.put(key, cached)
                if len(self._files) > 10_000:
                    self._files.clear()
                self._files[key] = cached
            digest, sampled = cached
            size = stat.st_size
        attrs: dict[str, Any] = {"contentDigest": digest}
        if sampled:
            attrs["sampled"] = True
        if size is not None:
            attrs["sizeBytes"] = size
        return Data(
            self._data_iri(digest),
            ml_class or "DomainData",
            attrs,
            label=os.path.basename(path),
            location=path,
        )

    def reference(self, ref: DataReference, ml_class: str | None) -> Data:
        return Data(
            ids.reference_iri(ref.data_store, ref.reference, base=self.base),
            ml_class or "DomainData",
            {"dataStore": ref.data_store, "dataReference": ref.reference},
            label=ref.reference.rstrip("/").rpartition("/")[2] or ref.reference,
        )

    def buffer(self, value: bytes | bytearray | memoryview, ml_class: str | None) -> Data:
        digest = ids.digest_bytes(value)
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        return Data(
            self._data_iri(digest),
            ml_class or "DomainData",
            {"contentDigest": digest, "sizeBytes": size},
            label=f"{type(value).__name__}[{size}]",
        )

    def array(self, value: Any, ml_class: str | None) -> Data:
        """The array's raw bytes (C order) give its identity; dtype and shape its label."""
        try:
            buffer: Any = memoryview(value).cast("B")
        except (TypeError, ValueError):  # not C-contiguous, or an object array
            buffer = value.tobytes()
        digest = ids.digest_bytes(buffer)
        shape = "x".join(str(n) for n in value.shape)
        return Data(
            self._data_iri(digest),
            ml_class or "FeatureSetData",
            {"contentDigest": digest, "sizeBytes": int(value.nbytes)},
            label=f"ndarray {value.dtype}[{shape}]",
        )

    def frame(self, value: Any, ml_class: str | None) -> Data:
        """pandas' own row hashes (values and index) plus the column names."""
        import pandas  # the value is a pandas object, so pandas is already imported

        rows = pandas.util.hash_pandas_object(value, index=True).to_numpy()
        columns = list(value.columns) if hasattr(value, "columns") else [value.name]
        header = json.dumps([str(c) for c in columns]).encode()
        digest = ids.digest_bytes(header + b"\0" + rows.tobytes())
        shape = "x".join(str(n) for n in value.shape)
        return Data(
            self._data_iri(digest),
            ml_class or "FeatureSetData",
            {"contentDigest": digest},
            label=f"{type(value).__name__}[{shape}]",
        )


# ---------------------------------------------------------------- classification


def _scalar(name: str, value: bool | int | float | str) -> Param:
    lexical = value if isinstance(value, str) else json.dumps(value)
    return Param(name, lexical[:10_000], type(value).__name__)


def _small_json(value: Any) -> str | None:
    try:
        if len(value) > _SMALL_CONTAINER:
            return None
        text = json.dumps(value, sort_keys=isinstance(value, Mapping), default=str)
    except (TypeError, ValueError, RecursionError):
        return None
    return text if len(text) <= _SMALL_JSON else None


def _parameter_count(module: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in module.parameters()))
    except Exception:
        return None


def estimator_params(prefix: str, estimator: Any) -> list[Description]:
    """``get_params(deep=False)`` as hyperparameter settings, named by the parameters."""
    try:
        params = estimator.get_params(deep=False)
    except Exception as exc:
        log_once(
            f"get_params:{type_name(estimator)}",
            "provml capture: %s.get_params() failed (%s); its hyperparameters are not recorded",
            type_name(estimator),
            exc,
        )
        return [Opaque(prefix, type_name(estimator))]
    out: list[Description] = []
    for key, value in sorted(params.items()):
        out.extend(classify(str(key), value, declared_data=False, ml_class=None, digests=None))
    return out


def classify(
    name: str,
    value: Any,
    *,
    declared_data: bool,
    ml_class: str | None,
    digests: Digests | None,
) -> list[Description]:
    """Describe one named value; ``declared_data`` makes a ``str`` a file path.

    Never raises: a value that cannot be described is recorded by its type name.
    """
    try:
        if value is None:
            return []
        if digests is not None:
            if isinstance(value, DataReference):
                return [digests.reference(value, ml_class)]
            if isinstance(value, PurePath) or (declared_data and isinstance(value, str)):
                return [digests.path(value, ml_class)]
            if isinstance(value, bytes | bytearray | memoryview):
                return [digests.buffer(value, ml_class)]
            if is_array(value):
                return [digests.array(value, ml_class)]
            if is_frame(value):
                return [digests.frame(value, ml_class)]
        if isinstance(value, bool | int | float | str):
            if isinstance(value, float) and value != value:  # NaN: PROV has no lexical form
                return [Param(name, "NaN", "float")]
            return [_scalar(name, value)]
        if is_estimator(value):
            return estimator_params(name, value)
        if is_torch_module(value):
            return [Algorithm(name, type_name(value), _parameter_count(value))]
        if isinstance(value, list | tuple | dict):
            text = _small_json(value)
            if text is not None:
                return [Param(name, text, type(value).__name__)]
        if _module_root(value) == "numpy" and hasattr(value, "item"):  # a numpy scalar
            return [_scalar(name, value.item())]
        return [Opaque(name, type_name(value))]
    except Exception as exc:
        log_once(
            f"classify:{type(value).__name__}:{type(exc).__name__}",
            "provml capture: could not describe a %s (%s: %s); recorded by type name",
            type(value).__name__,
            type(exc).__name__,
            exc,
        )
        try:
            return [Opaque(name, type_name(value))]
        except Exception:
            return [Opaque(name, "unknown")]
