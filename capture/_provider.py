"""``init``: the process-wide provider, its run, its exporter; flush, shutdown, fork, exit.

``init`` is the only capture function that raises (``ConfigurationError``, saying what
to fix). After a fork the child gets a fresh queue, exporter thread and spool file and
keeps the parent's run and current activity, so its stages nest where the fork happened.

Imports: standard library and ``provml.config``/``provml.errors``/``provml.ids`` only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provml import ids
from provml.capture import _state
from provml.capture._activity import Run, current_activity_var, current_run_var
from provml.capture._agent import current_user
from provml.capture._build import RecordBuilder
from provml.capture._export import (
    BatchExporter,
    Exporter,
    HttpDestination,
    InboxDestination,
    StoreDestination,
)
from provml.capture._spool import Spool
from provml.capture._state import Counters, Stats, internal_error, logger
from provml.config import resolve_store
from provml.errors import ConfigurationError

#: Carries ``"<bundle IRI>|<activity IRI>"`` into worker processes (see ``context``).
PARENT_ENV = "PROVML_PARENT"
DEFAULT_SPOOL = Path(".provml") / "spool"


class Provider:
    """Everything ``init`` configured: the default run, the exporter, the counters."""

    def __init__(self, settings: dict[str, Any], destination: Any, run: Run) -> None:
        self.settings = settings
        self.destination = destination
        self.run = run
        self.counters = Counters()
        self.spool = Spool(settings["spool_dir"]) if settings["spool"] else None
        self.exporter = self._make_exporter()
        self.pid = os.getpid()

    def _make_exporter(self) -> BatchExporter:
        s = self.settings
        builder = RecordBuilder(s["base"], s["user"], s["packages"])
        return BatchExporter(
            self.destination,
            builder,
            self.counters,
            self.spool,
            queue_size=s["queue_size"],
            batch_size=s["batch_size"],
            schedule_delay=s["schedule_delay"],
        )

    def describe_destination(self) -> str:
        describe = getattr(self.destination, "describe", None)
        return describe() if callable(describe) else type(self.destination).__name__

    def after_fork(self) -> None:
        """In a forked child: new counters, spool file, destination connection, thread.

        The child works inside the parent's runs but does not own them: only the parent
        ends a run (two ends with different times would contradict each other).
        """
        self.pid = os.getpid()
        self.run.owned = False
        current = current_run_var.get()
        if current is not None:
            current.owned = False
        self.counters = Counters()
        self.spool = Spool(self.settings["spool_dir"]) if self.settings["spool"] else None
        self.destination = _reopen(self.destination)
        self.exporter = self._make_exporter()
        self.exporter.start()


def _reopen(destination: Any) -> Any:
    # A database connection must not be shared with the parent; the others are stateless.
    if isinstance(destination, StoreDestination):
        return StoreDestination(destination.location)
    return destination


# ---------------------------------------------------------------------- init


def _positive(name: str, value: Any, integer: bool) -> None:
    kinds = int if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not value > 0:
        what = "whole number" if integer else "number of seconds"
        raise ConfigurationError(
            f"provml.init({name}=...) must be a positive {what}, got {value!r}"
        )


def _destination(
    store: str | None, endpoint: str | None, token: str | None, exporter: Any, timeout: float
) -> tuple[Any, bool]:
    """The destination and whether it needs a spool."""
    given = [n for n, v in (("store", store), ("endpoint", endpoint), ("exporter", exporter)) if v]
    if len(given) > 1:
        raise ConfigurationError(
            f"provml.init() got {' and '.join(given)}: give one destination "
            "(store=URL for a record store, endpoint=URL for a provml server, or exporter=...)"
        )
    if exporter is not None:
        if not callable(getattr(exporter, "export", None)):
            raise ConfigurationError(
                f"provml.init(exporter=...) needs an object with export(bundles), "
                f"got {type(exporter).__name__}"
            )
        return exporter, bool(getattr(exporter, "spool", False))
    endpoint = endpoint or (None if store else os.environ.get("PROVML_ENDPOINT"))
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"provml.init(endpoint={endpoint!r}): use the provml server's base URL, "
                "e.g. http://provml.example.org:8000"
            )
        return HttpDestination(endpoint, token or os.environ.get("PROVML_TOKEN"), timeout), True
    if store and urlsplit(store).scheme in ("http", "https"):
        raise ConfigurationError(
            f"provml.init(store={store!r}) is a server URL: pass it as endpoint={store!r}"
        )
    location = resolve_store(store)
    if location.embedded:
        return InboxDestination(location), True
    return StoreDestination(location), True


def _parent_from_env() -> tuple[str, str] | None:
    value = os.environ.get(PARENT_ENV)
    if not value:
        return None
    bundle, sep, activity = value.partition("|")
    if not sep or "://" not in bundle or "://" not in activity:
        raise ConfigurationError(
            f"{PARENT_ENV}={value!r} is not '<bundle IRI>|<activity IRI>'; "
            "set it with provml.capture.context.child_env() or unset it"
        )
    return bundle, activity


def _default_workflow() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else "python"


def init(
    workflow: str | None = None,
    *,
    store: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    exporter: Exporter | None = None,
    user: str | None = None,
    packages: tuple[str, ...] | list[str] = (),
    spool_dir: str | os.PathLike[str] | None = None,
    base_iri: str | None = None,
    queue_size: int = 100_000,
    batch_size: int = 512,
    schedule_delay: float = 1.0,
    export_timeout: float = 5.0,
    exit_timeout: float = 10.0,
) -> Run:
    """Start capturing provenance in this process: configure once, near the top of a job.

    Zero configuration records to the embedded store (``PROVML_STORE`` or ``./.provml``).
    Calling ``init`` again ends the previous run (flushing it) and starts a new one.

    Args:
        workflow: the workflow's name (default: ``PROVML_WORKFLOW`` or the script's name).
        store: a record store URL or directory (``sqlite:///…``, ``postgresql+psycopg://…``).
        endpoint: a provml server's base URL; records are POSTed to ``/api/v1/records``
            (default ``PROVML_ENDPOINT``).
        token: a bearer token for the endpoint (default ``PROVML_TOKEN``).
        exporter: any object with ``export(bundles)``, e.g.
            :class:`provml.capture.testing.InMemoryExporter`; its failed batches are
            spooled only if it has a true ``spool`` attribute, else dropped and counted.
        user: the person the work is done for (default: the login name).
        packages: distribution names whose versions to record besides the ML libraries
            found imported.
        spool_dir: where undeliverable batches wait (default ``PROVML_SPOOL`` or
            ``./.provml/spool``).
        base_iri: the base of every IRI (default ``PROVML_BASE_IRI``).
        queue_size: calls held in memory before new ones are dropped (and counted).
        batch_size: records per delivery.
        schedule_delay: seconds between deliveries of a partial batch.
        export_timeout: seconds to wait for the endpoint before spooling.
        exit_timeout: seconds the exit hook waits to deliver what is queued.

    Returns:
        The run: ``.bundle`` (the PROV bundle IRI) and ``.iri`` (its WorkflowExecution).

    Raises:
        ConfigurationError: a bad argument or environment variable; the message says
            what to change.
    """
    _positive("queue_size", queue_size, True)
    _positive("batch_size", batch_size, True)
    _positive("schedule_delay", schedule_delay, False)
    _positive("export_timeout", export_timeout, False)
    _positive("exit_timeout", exit_timeout, False)
    base = base_iri or ids.base_iri()
    if not base.endswith(("/", "#")):
        base += "/"
    if "://" not in base:
        raise ConfigurationError(
            f"base IRI {base!r} must be an absolute IRI such as https://example.org/"
        )
    destination, needs_spool = _destination(store, endpoint, token, exporter, float(export_timeout))
    parent = _parent_from_env()
    workflow = workflow or os.environ.get("PROVML_WORKFLOW") or _default_workflow()
    spool = Path(spool_dir or os.environ.get("PROVML_SPOOL") or DEFAULT_SPOOL).absolute()
    if spool.exists() and not spool.is_dir():
        raise ConfigurationError(f"spool_dir {str(spool)!r} is a file: give a directory")

    if _state.provider is not None:
        shutdown()
    run = Run(str(workflow), base, *(parent or ()))
    settings = {
        "base": base,
        "user": user or current_user(),
        "packages": tuple(packages),
        "spool": needs_spool,
        "spool_dir": spool,
        "queue_size": queue_size,
        "batch_size": batch_size,
        "schedule_delay": float(schedule_delay),
        "exit_timeout": float(exit_timeout),
    }
    provider = Provider(settings, destination, run)
    provider.exporter.start()
    if run.owned:
        provider.exporter.put(("run_start", run))
    _install_hooks()
    _state.provider = provider
    return run


# ----------------------------------------------------------- runs, flush, stop


def _end_run(provider: Provider, run: Run, exc: BaseException | None) -> None:
    run.end_ns = time.time_ns()
    if exc is None:
        run.status = "completed"
    else:
        run.status = "failed"
        run.error_type = type(exc).__qualname__
        try:
            run.error_message = str(exc)[:2000]
        except Exception:
            run.error_message = None
    provider.exporter.put(("run_end", run))


@contextlib.contextmanager
def run(workflow: str | None = None) -> Iterator[Run | None]:
    """A workflow run of its own (its own PROV bundle) inside this process.

    ``with provml.run("retrain-2024"):`` — stages inside belong to the new run. Yields
    None before ``init``.
    """
    provider = _state.provider
    if provider is None:
        yield None
        return
    try:
        new = Run(workflow or provider.run.workflow, provider.settings["base"])
        provider.exporter.put(("run_start", new))
        run_token = current_run_var.set(new)
        activity_token = current_activity_var.set(None)
    except Exception as exc:
        internal_error("starting a run", exc)
        yield None
        return
    failure: BaseException | None = None
    try:
        yield new
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            current_activity_var.reset(activity_token)
            current_run_var.reset(run_token)
            _end_run(provider, new, failure)
        except Exception as exc:
            internal_error("ending a run", exc)


def flush(timeout: float | None = 30.0) -> bool:
    """Deliver everything captured so far (retrying a failed destination once now).

    Returns:
        True when every record reached the destination; False when some are spooled
        (see :func:`stats` and the log) or the timeout passed. Never raises.
    """
    provider = _state.provider
    if provider is None:
        return True
    try:
        return provider.exporter.flush(timeout)
    except Exception as exc:
        internal_error("flush", exc)
        return False


def shutdown(timeout: float | None = None, *, _failure: BaseException | None = None) -> bool:
    """End the run, deliver what is queued (within ``timeout``), stop capturing.

    Decorators become pass-throughs again. What could not be delivered is named in a
    warning together with the spool directory that keeps it. Never raises.
    """
    provider = _state.provider
    if provider is None:
        return True
    _state.provider = None
    try:
        if provider.run.owned and provider.run.end_ns is None:
            _end_run(provider, provider.run, _failure)
        if timeout is None:
            timeout = provider.settings["exit_timeout"]
        delivered = provider.exporter.shutdown(timeout)
        if not delivered:
            _report_undelivered(provider)
        return delivered
    except Exception as exc:
        internal_error("shutdown", exc)
        return False


def _report_undelivered(provider: Provider) -> None:
    s = stats(provider)
    if provider.spool is None:
        logger.warning(
            "provml capture: not everything reached %s: %d calls still queued are lost "
            "(this destination has no spool), dropped %s",
            provider.describe_destination(),
            s.pending,
            dict(s.dropped) or "nothing",
        )
        return
    files = provider.spool.pending_files() if provider.spool is not None else []
    logger.warning(
        "provml capture: not everything reached %s: %d records spooled in %s (%d file%s), "
        "%d calls still queued, dropped %s. Spooled records are replayed by the next "
        "provml process that uses this spool directory.",
        provider.describe_destination(),
        s.spooled - s.replayed,
        provider.spool.directory if provider.spool is not None else "(no spool)",
        len(files),
        "" if len(files) == 1 else "s",
        s.pending,
        dict(s.dropped) or "nothing",
    )


def stats(provider: Provider | None = None) -> Stats:
    """Counters of this process's capture: captured, exported, spooled, replayed, dropped."""
    provider = provider or _state.provider
    if provider is None:
        return Stats()
    spool_dir = str(provider.spool.directory) if provider.spool is not None else None
    return provider.counters.snapshot(provider.exporter.pending(), spool_dir)


def current_run() -> Run | None:
    provider = _state.provider
    if provider is None:
        return None
    return current_run_var.get() or provider.run


# ------------------------------------------------------------------- hooks

_hooks_installed = False


def _at_exit() -> None:
    # An uncaught exception in the main script is in sys.last_value by now.
    failure = getattr(sys, "last_value", None)
    shutdown(_failure=failure if isinstance(failure, BaseException) else None)


def _before_fork() -> None:
    # Activity IRIs are made on first use; make the current chain's now, so parent and
    # child name the activity the fork happened in alike.
    try:
        activity = current_activity_var.get()
        while activity is not None:
            activity.iri  # noqa: B018 - materialises the lazy IRI
            activity = activity.parent
    except Exception as exc:
        internal_error("preparing a fork", exc)


def _after_fork_in_child() -> None:
    _state.reset_after_fork()
    import provml.capture._activity as activity_module

    activity_module._iri_lock = threading.Lock()
    provider = _state.provider
    if provider is not None:
        try:
            provider.after_fork()
            _flush_when_a_multiprocessing_child_exits()
        except Exception as exc:
            _state.provider = None
            internal_error("restarting after fork", exc)


def _flush_when_a_multiprocessing_child_exits() -> None:
    """multiprocessing ends its forked children with ``os._exit``: atexit hooks never
    run there, its finalizers do — but it clears the finalizers it inherited first, then
    runs its after-fork callbacks, so ours registers the finalizer from one of those.
    (``Pool.terminate()``, which ``with Pool()`` calls, kills workers outright: call
    ``provml.flush()`` at the end of each task there.)"""
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _state.provider is not None:
        mp_util.register_after_fork(_state.provider, _finalize_in_multiprocessing_child)


def _finalize_in_multiprocessing_child(provider: Provider) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(provider, shutdown, exitpriority=100)


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
