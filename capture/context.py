"""Carrying the capture context into threads and worker processes.

Context variables do not follow work into a ``threading.Thread`` or a pool worker, nor
into another process. :func:`wrap` binds the current run and activity to a callable, so
stages it runs nest where it was wrapped; :func:`child_env` gives the environment a
subprocess needs (``PROVML_PARENT="<bundle>|<activity>"``): its ``provml.init`` then
joins this run, and its stages are informed by the current activity.

Imports: standard library only (and ``provml.capture`` internals).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

from provml.capture import _state
from provml.capture._activity import Activity, Run, current_activity_var, current_run_var
from provml.capture._provider import PARENT_ENV, current_run

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["PARENT_ENV", "child_env", "current_activity", "current_run", "parent_value", "wrap"]


def current_activity() -> Activity | None:
    """The activity the calling code runs in, or None (outside any stage or before init)."""
    return current_activity_var.get()


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind the current run and activity to ``fn`` for calls on any thread.

    ``pool.submit(provml.capture.context.wrap(work), item)`` — stages inside ``work`` are
    informed by the activity that was current here. Safe to call concurrently.
    """
    activity = current_activity_var.get()
    run = current_run_var.get()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        run_token = current_run_var.set(run)
        activity_token = current_activity_var.set(activity)
        try:
            return fn(*args, **kwargs)
        finally:
            current_activity_var.reset(activity_token)
            current_run_var.reset(run_token)

    return bound


def parent_value() -> str | None:
    """``"<bundle IRI>|<activity IRI>"`` for the current context, or None before init."""
    run: Run | None = current_run()
    if run is None:
        return None
    activity = current_activity_var.get()
    return f"{run.bundle}|{activity.iri if activity is not None else run.activity}"


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a subprocess that joins this run under the current activity.

    ``subprocess.run([...], env=provml.capture.context.child_env())``. Before ``init``
    (or when nothing is captured) it is just a copy of ``base`` (default ``os.environ``).
    """
    env = dict(os.environ if base is None else base)
    try:
        value = parent_value() if _state.provider is not None else None
    except Exception as exc:
        _state.internal_error("child_env", exc)
        value = None
    if value is not None:
        env[PARENT_ENV] = value
    return env
