"""provml: W3C PROV compliant provenance for machine-learning workflows (PROV-ML).

The capture API is available at the top level (``provml.init``, ``provml.training``,
``provml.log_metric`` …, see :mod:`provml.capture`). The names are loaded on first use,
so ``import provml`` stays as light as the standard library; stores, serialisers and the
service are imported by the modules that need them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: The capture names re-exported here (the public surface of provml.capture).
_CAPTURE = (
    "activity",
    "current_activity",
    "data_transformation",
    "evaluation",
    "flush",
    "generated",
    "inference",
    "init",
    "log_input",
    "log_metric",
    "log_model_version",
    "log_output",
    "log_param",
    "log_params",
    "run",
    "section",
    "shutdown",
    "stats",
    "training",
    "used",
    "validation",
    "DataReference",
)

__all__ = ["__version__", *_CAPTURE]


def __getattr__(name: str) -> Any:
    if name in _CAPTURE:
        from provml import capture

        value = getattr(capture, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'provml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
