"""The one error hierarchy of provml.

Every layer translates third-party exceptions into these at its boundary, so callers
(the CLI, the HTTP handler, capture's logging) need to know only this module. Each
class carries a stable ``code`` that the HTTP API puts in its error bodies.

Imports: standard library only.
"""

from __future__ import annotations

from typing import Any


class ProvmlError(Exception):
    """Base of every error provml raises on purpose."""

    code = "provml_error"
    http_status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}


class InvalidRecord(ProvmlError):
    """A record or document breaks the PROV-ML rules; ``details`` names record and field."""

    code = "invalid_record"
    http_status = 422

    def __init__(
        self, message: str, *, record: str | None = None, field: str | None = None, **details: Any
    ) -> None:
        super().__init__(message, record=record, field=field, **details)
        self.record = record
        self.field = field


class ParseError(InvalidRecord):
    """A document could not be read in the format it claims to be in."""

    code = "parse_error"
    http_status = 400


class UnsupportedFormat(ProvmlError):
    code = "unsupported_format"
    http_status = 415


class NotFound(ProvmlError):
    code = "not_found"
    http_status = 404


class Conflict(ProvmlError):
    """The same record id arrived again with different content; nothing was overwritten."""

    code = "conflict"
    http_status = 409


class StoreUnavailable(ProvmlError):
    code = "store_unavailable"
    http_status = 503


class SchemaOutdated(StoreUnavailable):
    """The SQL schema is behind the migrations; the message names the command to run."""

    code = "schema_outdated"


class QueryRejected(ProvmlError):
    """A query is not allowed (update, SERVICE, LOAD…) or not understood."""

    code = "query_rejected"
    http_status = 400


class QueryTimeout(ProvmlError):
    code = "query_timeout"
    http_status = 503


class ConfigurationError(ProvmlError):
    code = "configuration_error"
    http_status = 500


class MissingExtra(ConfigurationError):
    """An optional dependency is not installed; the message names the install command."""

    code = "missing_extra"

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is needed for this and is not installed: pip install 'provml[{extra}]'",
            module=module,
            extra=extra,
        )


__all__ = [
    "ConfigurationError",
    "Conflict",
    "InvalidRecord",
    "MissingExtra",
    "NotFound",
    "ParseError",
    "ProvmlError",
    "QueryRejected",
    "QueryTimeout",
    "SchemaOutdated",
    "StoreUnavailable",
    "UnsupportedFormat",
]
