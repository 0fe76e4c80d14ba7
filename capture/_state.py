"""Process-wide capture state: the provider set by ``init``, counters, log-once.

The hot path reads :data:`provider` (None until ``provml.init``) and nothing else from
here; everything else is used by the exporter thread or by ``init``/``flush``.

Imports: standard library only.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provml.capture._provider import Provider

logger = logging.getLogger("provml.capture")

#: The configured provider, or None: then every decorator is a pass-through.
provider: Provider | None = None

_logged: set[str] = set()
_logged_lock = threading.Lock()


def log_once(cause: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``message`` the first time ``cause`` happens in this process; never raises."""
    try:
        with _logged_lock:
            if cause in _logged:
                return
            _logged.add(cause)
        logger.log(level, message, *args)
    except Exception:  # logging itself failed: nothing sensible left to do
        pass


def internal_error(where: str, exc: BaseException) -> None:
    """Report a bug of ours once per place and exception type; the user's job goes on."""
    log_once(
        f"internal:{where}:{type(exc).__name__}",
        "provml capture: internal error in %s (%s: %s); the workflow continues, "
        "provenance for this call may be incomplete",
        where,
        type(exc).__name__,
        exc,
    )


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters of one process's capture, in PROV records unless said otherwise.

    Attributes:
        captured: records built from captured calls.
        exported: records the destination acknowledged on first try.
        spooled: records written to the local spool because the destination failed.
        replayed: spooled records the destination later acknowledged.
        dropped: lost items by reason (a queue-full drop counts captured calls, not records).
        pending: calls waiting in the queue right now.
        spool_dir: where undeliverable batches are kept.
    """

    captured: int = 0
    exported: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))
    pending: int = 0
    spool_dir: str | None = None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Counters:
    """Mutable counters shared by the hot path (drops) and the exporter thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.captured = 0
        self.exported = 0
        self.spooled = 0
        self.replayed = 0
        self.dropped: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def dropped_total(self) -> int:
        with self.lock:
            return sum(self.dropped.values())

    def drop(self, reason: str, n: int, *, logged: bool = False) -> None:
        """Count ``n`` lost items; log the reason once unless the caller ``logged`` it."""
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        if logged:
            return
        log_once(
            f"drop:{reason}",
            "provml capture: dropping provenance (%s); further drops for this reason are "
            "counted in provml.capture.stats() without logging",
            reason,
        )

    def snapshot(self, pending: int, spool_dir: str | None) -> Stats:
        with self.lock:
            return Stats(
                self.captured,
                self.exported,
                self.spooled,
                self.replayed,
                MappingProxyType(dict(self.dropped)),
                pending,
                spool_dir,
            )


def reset_after_fork() -> None:
    """Locks copied from the parent may be held by a thread that does not exist here."""
    global _logged_lock
    _logged_lock = threading.Lock()
