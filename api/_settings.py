"""The service's settings: one frozen dataclass, read from the environment by default.

Imports: standard library and ``provml.errors`` only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from provml.errors import ConfigurationError

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_SPARQL_TIMEOUT = 30.0
DEFAULT_SPARQL_MAX_ROWS = 100_000
# The lowest priority Linux gives: a burst of ingests takes the cores and the projection
# runs in what they leave. 200k records over HTTP, four server processes, nice 19 and 10
# in turns: faster in 8 of 9 pairs, median ratio 1.05 (bench/service/projector_priority.py);
# a paced mixed load saw no difference in ingest, lineage or SPARQL latency.
DEFAULT_PROJECT_NICE = 19


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigurationError(
            f"{name}={text!r} is not a {kind.__name__}", setting=name
        ) from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {text}", setting=name)
    return value


def _nice(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) > 19:
        raise ConfigurationError(
            f"{name}={text!r} is not a nice increment from 0 to 19", setting=name
        )
    return int(text)


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name}={text!r} is not a yes/no value", setting=name)


@dataclass(frozen=True, slots=True)
class Settings:
    """How one provml service runs.

    Attributes:
        store: the store URL or directory (see :mod:`provml.config`); None for
            ``PROVML_STORE`` or ``./.provml``.
        rdf_path: the Oxigraph directory; None for the store's own (``PROVML_RDF``).
        write_token: when set, every write needs ``Authorization: Bearer <token>``.
        read_token: when set, every read needs a bearer token too (the write token
            is accepted for reads as well).
        max_body_bytes: the largest request body accepted, after gzip decompression.
        sparql_timeout: seconds a SPARQL query may run.
        sparql_max_rows: the most rows (or triples) a SPARQL answer may have.
        allow_service: allow federated SPARQL (SERVICE), which makes the server fetch
            from other servers.
        cors_origins: origins allowed by CORS; empty means CORS is off.
        project_interval: seconds between projector checks of the outbox when no
            ingest wakes it (catches up rows written by other processes).
        project_nice: how much lower than the request handlers the projector thread
            (and the RDF engine's own compaction and flush threads) run, as a Linux
            nice increment (0 to 19; 0 for equal footing). The RDF
            side is a projection of the SQL store: under a burst of ingests the cores
            go to storing the batches first, and the projection catches up after.
    """

    store: str | None = None
    rdf_path: str | None = None
    write_token: str | None = None
    read_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    sparql_timeout: float = DEFAULT_SPARQL_TIMEOUT
    sparql_max_rows: int = DEFAULT_SPARQL_MAX_ROWS
    allow_service: bool = False
    cors_origins: tuple[str, ...] = ()
    project_interval: float = 1.0
    project_nice: int = DEFAULT_PROJECT_NICE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``PROVML_*`` environment variables.

        ``PROVML_STORE``, ``PROVML_RDF``, ``PROVML_WRITE_TOKEN``, ``PROVML_READ_TOKEN``,
        ``PROVML_MAX_BODY_BYTES``, ``PROVML_SPARQL_TIMEOUT``, ``PROVML_SPARQL_MAX_ROWS``,
        ``PROVML_SPARQL_ALLOW_SERVICE`` (yes/no), ``PROVML_CORS_ORIGINS`` (comma-separated),
        ``PROVML_PROJECT_NICE`` (0 to 19).

        Raises:
            ConfigurationError: a value is malformed; the message names the variable.
        """
        env = os.environ if env is None else env
        origins = tuple(
            o.strip() for o in env.get("PROVML_CORS_ORIGINS", "").split(",") if o.strip()
        )
        return cls(
            store=env.get("PROVML_STORE") or None,
            rdf_path=env.get("PROVML_RDF") or None,
            write_token=env.get("PROVML_WRITE_TOKEN") or None,
            read_token=env.get("PROVML_READ_TOKEN") or None,
            max_body_bytes=int(_number(env, "PROVML_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int)),
            sparql_timeout=_number(env, "PROVML_SPARQL_TIMEOUT", DEFAULT_SPARQL_TIMEOUT, float),
            sparql_max_rows=int(
                _number(env, "PROVML_SPARQL_MAX_ROWS", DEFAULT_SPARQL_MAX_ROWS, int)
            ),
            allow_service=_flag(env, "PROVML_SPARQL_ALLOW_SERVICE"),
            cors_origins=origins,
            project_nice=_nice(env, "PROVML_PROJECT_NICE", DEFAULT_PROJECT_NICE),
        )
