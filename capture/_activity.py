"""The capture primitive: one object that is a decorator and a context manager.

``provml.training`` & co. make a :class:`Stage`; decorating a function (sync, async,
generator or async generator) or entering it with ``with``/``async with`` opens an
:class:`Activity` for the execution. The hot path here does constant work: read two
context variables, make one small object, take two timestamps, append it to the
exporter's queue when it ends. Turning it into PROV records (IRIs, digests, agents)
happens on the exporter thread.

Never raises into user code: a failure of ours is logged once and the user's function
runs as if undecorated; the user's exceptions are recorded and re-raised unchanged.

Imports: standard library and ``provml.ids``/``provml.vocab`` only.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from provml import ids
from provml.capture import _state
from provml.capture._state import internal_error, log_once
from provml.vocab import ML_CLASS_BY_NAME

P = ParamSpec("P")
R = TypeVar("R")

#: The activity the code is running in (None at the top of a run).
current_activity_var: ContextVar[Activity | None] = ContextVar("provml_activity", default=None)
#: A run opened with ``provml.run(...)``; None means the provider's default run.
current_run_var: ContextVar[Run | None] = ContextVar("provml_run", default=None)

_iri_lock = threading.Lock()

SECTION = "LearningStageSection"


class Run:
    """One workflow run: a PROV bundle and the activity its top-level stages belong to.

    A run made by ``init``/``provml.run`` in this process owns a ``WorkflowExecution``
    activity; a run joined through ``PROVML_PARENT`` (a worker process) owns nothing
    and hangs its stages under the parent's activity.
    """

    __slots__ = (
        "activity",
        "base",
        "bundle",
        "end_ns",
        "error_message",
        "error_type",
        "owned",
        "start_ns",
        "status",
        "workflow",
    )

    def __init__(
        self, workflow: str, base: str, bundle: str | None = None, activity: str | None = None
    ) -> None:
        self.workflow = workflow
        self.base = base
        self.owned = bundle is None
        self.bundle = bundle or ids.new_iri("run", base=base)
        self.activity = activity or ids.new_iri("activity", base=base)
        self.start_ns = time.time_ns()
        self.end_ns: int | None = None
        self.status = "running"
        self.error_type: str | None = None
        self.error_message: str | None = None

    @property
    def iri(self) -> str:
        """The IRI of the run's activity (the WorkflowExecution, or the joined parent)."""
        return self.activity

    def __repr__(self) -> str:
        return f"Run(bundle={self.bundle!r}, activity={self.activity!r})"


@dataclass(frozen=True, slots=True)
class StageSpec:
    """What a decorated function or ``with`` block records; made once per decoration."""

    stage: str | None  # a PROV-ML prospective class name ("Training"), None for generic
    name: str
    inputs: frozenset[str] = frozenset()
    outputs: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()
    capture_args: bool = True
    capture_return: bool = True
    ignore: frozenset[str] = frozenset()
    step: int | None = None
    signature: inspect.Signature | None = None


class Activity:
    """One execution of a stage: what ``with provml.training(...) as run:`` gives you.

    Log into it with :meth:`used`, :meth:`generated`, :meth:`log_param`,
    :meth:`log_metric` and :meth:`log_model_version`; the module-level functions of the
    same names log into the current activity.
    """

    __slots__ = (
        "__weakref__",
        "_iri",
        "_owner",
        "_token",
        "args",
        "end_ns",
        "ended",
        "error_message",
        "error_type",
        "inputs",
        "kwargs",
        "model_versions",
        "outputs",
        "parent",
        "result",
        "run",
        "spec",
        "start_ns",
        "status",
    )

    def __init__(
        self, spec: StageSpec, run: Run, parent: Activity | None, args: tuple, kwargs: dict
    ) -> None:
        self.spec = spec
        self.run = run
        self.parent = parent
        self.args = args
        self.kwargs = kwargs
        self._iri: str | None = None
        self._token: Any = None
        self._owner: Stage | None = None
        self.inputs: list[tuple[str | None, Any, dict[str, Any]]] = []
        self.outputs: list[tuple[str | None, Any, dict[str, Any]]] = []
        self.model_versions: list[ModelVersionLog] = []
        self.result: Any = None
        self.status = "running"
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.ended = False
        self.end_ns = 0
        self.start_ns = time.time_ns()

    @property
    def iri(self) -> str:
        """The activity's IRI (made on first use, on whichever thread asks first)."""
        iri = self._iri
        if iri is None:
            with _iri_lock:
                if self._iri is None:
                    # ids.new_iri's form, without quoting: a UUID needs none.
                    self._iri = f"{self.run.base}activity/{ids.uuid7()}"
                iri = self._iri
        return iri

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def step(self) -> int | None:
        return self.spec.step

    def used(self, value: Any = None, name: str | None = None, **options: Any) -> None:
        """Record that this activity used ``value`` (see :func:`provml.capture.used`)."""
        _log_io(self, "used", value, name, options)

    def generated(self, value: Any = None, name: str | None = None, **options: Any) -> None:
        """Record that this activity generated ``value``."""
        _log_io(self, "generated", value, name, options)

    def log_param(self, name: str, value: Any) -> None:
        """Record a hyperparameter used by this activity."""
        _enqueue(("param", self.run, self, name, value, time.time_ns()))

    def log_metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Record a metric value generated by this activity, optionally at a step."""
        _log_metric(self.run, self, name, value, step)

    def log_model_version(
        self, model_name: str, version: int | None = None, **options: Any
    ) -> str | None:
        """Record a model version generated by this activity; returns its IRI."""
        return _log_model_version(self.run, self, model_name, version, options)

    def __repr__(self) -> str:
        return f"<Activity {self.spec.name!r} {self.status}>"


class _NoopActivity:
    """What ``with`` gives before ``init``: accepts every call and records nothing."""

    __slots__ = ()
    iri = None
    name = None
    step = None
    status = "not-captured"

    def used(self, *args: Any, **kwargs: Any) -> None:
        return None

    generated = used
    log_param = used
    log_metric = used

    def log_model_version(self, *args: Any, **kwargs: Any) -> None:
        return None


NOOP_ACTIVITY = _NoopActivity()


@dataclass(slots=True)
class ModelVersionLog:
    """A ``log_model_version`` call, turned into records on the exporter thread."""

    model_name: str
    version: int | str
    iri: str
    model: Any
    derived_from: tuple[Any, ...]
    time_ns: int


# ------------------------------------------------------------------ the hot path


def _enqueue(item: Any) -> None:
    try:
        provider = _state.provider
        if provider is not None:
            provider.exporter.put(item)
    except Exception as exc:
        internal_error("queueing a record", exc)


def _begin(provider: Any, spec: StageSpec, args: tuple, kwargs: dict) -> Activity | None:
    try:
        parent = current_activity_var.get()
        run = parent.run if parent is not None else current_run_var.get() or provider.run
        activity = Activity(spec, run, parent, args, kwargs)
        activity._token = current_activity_var.set(activity)
        return activity
    except Exception as exc:
        internal_error("starting an activity", exc)
        return None


def _qualified_type(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _finish(activity: Activity, exc: BaseException | None, result: Any) -> None:
    try:
        activity.end_ns = time.time_ns()
        token, activity._token = activity._token, None
        if token is not None:
            try:
                current_activity_var.reset(token)
            except ValueError:  # ended in another context (e.g. a generator moved threads)
                current_activity_var.set(activity.parent)
        if exc is None or isinstance(exc, GeneratorExit):
            activity.status = "completed"
            activity.result = result
        else:
            activity.status = "failed"
            activity.error_type = _qualified_type(exc)
            try:
                activity.error_message = str(exc)[:2000]
            except Exception:
                activity.error_message = f"<unprintable {type(exc).__name__}>"
        activity.ended = True
        _enqueue(activity)
    except Exception as err:
        internal_error("ending an activity", err)


# --------------------------------------------------------------- logging helpers


def nearest_activity() -> Activity | None:
    return current_activity_var.get()


def _current_run_and_activity() -> tuple[Run | None, Activity | None]:
    activity = current_activity_var.get()
    if activity is not None:
        return activity.run, activity
    provider = _state.provider
    if provider is None:
        return None, None
    return current_run_var.get() or provider.run, None


def _log_io(
    activity: Activity | None, direction: str, value: Any, name: Any, options: dict
) -> None:
    try:
        if _state.provider is None:
            return
        if activity is None:
            run, activity = _current_run_and_activity()
        else:
            run = activity.run
        if activity is not None and not activity.ended:
            target = activity.inputs if direction == "used" else activity.outputs
            target.append((name, value, options))
        else:
            _enqueue(("io", run, activity, direction, name, value, options, time.time_ns()))
    except Exception as exc:
        internal_error(f"provml.{direction}", exc)


def _log_metric(
    run: Run | None, activity: Activity | None, name: str, value: Any, step: Any
) -> None:
    try:
        if not isinstance(value, int | float):
            # Convert now: a framework tensor would keep its whole graph alive in the queue.
            value = float(value)
    except Exception as exc:
        log_once(
            f"metric:{type(value).__name__}",
            "provml capture: metric %r has a value of type %s that is not a number (%s); "
            "not recorded",
            name,
            type(value).__name__,
            exc,
        )
        return
    _enqueue(("metric", run, activity, name, value, step, time.time_ns()))


def _training_activity(activity: Activity | None) -> Activity | None:
    """The activity a model version belongs to: the nearest one that is not a section."""
    while activity is not None and activity.spec.stage == SECTION:
        activity = activity.parent
    return activity


def _log_model_version(
    run: Run | None, activity: Activity | None, model_name: str, version: Any, options: dict
) -> str | None:
    try:
        provider = _state.provider
        if provider is None or run is None:
            return None
        if version is None:
            version = str(ids.uuid7())  # unique without asking a store for the next number
        elif not isinstance(version, int) or isinstance(version, bool):
            version = str(version)
        log = ModelVersionLog(
            model_name=str(model_name),
            version=version,
            iri=ids.iri("model", str(model_name), "v", version, base=run.base),
            model=options.get("model"),
            derived_from=tuple(options.get("derived_from") or ()),
            time_ns=time.time_ns(),
        )
        owner = _training_activity(activity)
        if owner is not None and not owner.ended:
            owner.model_versions.append(log)
        else:
            _enqueue(("model", run, owner, log))
        return log.iri
    except Exception as exc:
        internal_error("provml.log_model_version", exc)
        return None


# ---------------------------------------------------------------- the primitive


def _default_name(fn: Callable[..., Any]) -> str:
    """The qualified name from the innermost ``<locals>`` on: ``Trainer.fit``, ``train``."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return name.rpartition("<locals>.")[2]


class Stage:
    """A decorator and a (sync or async) context manager recording one kind of stage.

    Made by :data:`provml.capture.training` and friends; see their documentation.
    """

    __slots__ = ("_block_spec", "_options", "_stage")

    def __init__(self, stage: str | None, **options: Any) -> None:
        self._stage = stage
        self._options = options
        self._block_spec: StageSpec | None = None  # made on first ``with``, then reused

    def _spec(self, fn: Callable[..., Any] | None) -> StageSpec:
        o = self._options
        name = o.get("name") or (_default_name(fn) if fn is not None else None)
        if name is None:
            name = self._stage or "activity"
        signature = None
        if fn is not None and o.get("capture_args", True):
            try:
                signature = inspect.signature(fn)
            except (TypeError, ValueError):
                signature = None
        return StageSpec(
            stage=self._stage,
            name=str(name),
            inputs=frozenset(_names(o.get("inputs"))),
            outputs=frozenset(_names(o.get("outputs"))),
            params=frozenset(_names(o.get("params"))),
            capture_args=bool(o.get("capture_args", True)),
            capture_return=bool(o.get("capture_return", True)),
            ignore=frozenset(_names(o.get("ignore"))),
            step=o.get("step"),
            signature=signature,
        )

    # -------------------------------------------------------------- decorator

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        try:
            spec = self._spec(fn)
        except Exception as exc:
            internal_error("decorating a function", exc)
            return fn
        if inspect.isasyncgenfunction(fn):
            return _wrap_async_generator(fn, spec)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return _wrap_generator(fn, spec)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):
            return _wrap_coroutine(fn, spec)  # type: ignore[return-value]
        return _wrap_function(fn, spec)

    # -------------------------------------------------------- context manager

    def __enter__(self) -> Activity:
        provider = _state.provider
        if provider is None:
            return NOOP_ACTIVITY  # type: ignore[return-value]
        try:
            spec = self._block_spec
            if spec is None:
                spec = self._block_spec = _block_spec(self)
        except Exception as exc:
            internal_error("entering an activity", exc)
            return NOOP_ACTIVITY  # type: ignore[return-value]
        activity = _begin(provider, spec, (), {})
        if activity is None:
            return NOOP_ACTIVITY  # type: ignore[return-value]
        activity._owner = self
        return activity

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        activity = current_activity_var.get()
        if activity is not None and activity._owner is self and not activity.ended:
            _finish(activity, exc, None)

    async def __aenter__(self) -> Activity:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


_block_specs: dict[Any, StageSpec] = {}


def _block_spec(stage: Stage) -> StageSpec:
    """Specs of ``with`` blocks, shared by equal options: a loop making
    ``with provml.section("epoch", step=i)`` anew each time pays for the spec once."""
    try:
        key = (stage._stage, tuple(sorted(stage._options.items())))
        hash(key)
    except TypeError:  # unhashable options (a list of inputs): no sharing
        return stage._spec(None)
    spec = _block_specs.get(key)
    if spec is None:
        if len(_block_specs) > 4096:
            _block_specs.clear()
        spec = _block_specs[key] = stage._spec(None)
    return spec


def _names(value: Any) -> Sequence[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _wrap_function(fn: Callable[P, R], spec: StageSpec) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        provider = _state.provider
        if provider is None:
            return fn(*args, **kwargs)
        activity = _begin(provider, spec, args, kwargs)
        if activity is None:
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _finish(activity, exc, None)
            raise
        _finish(activity, None, result)
        return result

    return wrapper


def _wrap_coroutine(fn: Callable[P, Any], spec: StageSpec) -> Callable[P, Any]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        provider = _state.provider
        if provider is None:
            return await fn(*args, **kwargs)
        activity = _begin(provider, spec, args, kwargs)
        if activity is None:
            return await fn(*args, **kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            _finish(activity, exc, None)
            raise
        _finish(activity, None, result)
        return result

    return wrapper


def _wrap_generator(fn: Callable[P, Iterator[Any]], spec: StageSpec) -> Callable[P, Iterator[Any]]:
    """The activity spans the whole iteration; the context is set only while the
    generator body runs, so the consumer's own stages do not nest under it."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
        provider = _state.provider
        gen = fn(*args, **kwargs)
        if provider is None:
            return (yield from gen)
        activity = _begin(provider, spec, args, kwargs)
        if activity is None:
            return (yield from gen)
        token, activity._token = activity._token, None
        current_activity_var.reset(token)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            token = current_activity_var.set(activity)
            try:
                if to_throw is not None:
                    pending, to_throw = to_throw, None
                    item = gen.throw(pending)
                else:
                    item = gen.send(to_send)
            except StopIteration as stop:
                _finish(activity, None, stop.value)
                return stop.value
            except BaseException as exc:
                _finish(activity, exc, None)
                raise
            finally:
                current_activity_var.reset(token)
            try:
                to_send = yield item
            except GeneratorExit:
                token = current_activity_var.set(activity)
                try:
                    gen.close()
                finally:
                    current_activity_var.reset(token)
                _finish(activity, None, None)
                raise
            except BaseException as exc:
                to_throw = exc

    return wrapper


def _wrap_async_generator(
    fn: Callable[P, AsyncIterator[Any]], spec: StageSpec
) -> Callable[P, AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Any]:
        provider = _state.provider
        agen = fn(*args, **kwargs)
        activity = _begin(provider, spec, args, kwargs) if provider is not None else None
        if activity is not None:
            token, activity._token = activity._token, None
            current_activity_var.reset(token)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            token = current_activity_var.set(activity) if activity is not None else None
            try:
                if to_throw is not None:
                    pending, to_throw = to_throw, None
                    item = await agen.athrow(pending)
                else:
                    item = await agen.asend(to_send)
            except StopAsyncIteration:
                if activity is not None:
                    _finish(activity, None, None)
                return
            except BaseException as exc:
                if activity is not None:
                    _finish(activity, exc, None)
                raise
            finally:
                if token is not None:
                    current_activity_var.reset(token)
            try:
                to_send = yield item
            except GeneratorExit:
                await agen.aclose()
                if activity is not None:
                    _finish(activity, None, None)
                raise
            except BaseException as exc:
                to_throw = exc

    return wrapper


# ------------------------------------------------------------------ factories


class StageFactory:
    """``provml.training`` and friends: use bare, with options, or as a ``with`` block.

    ``@provml.training`` · ``@provml.training("fit", inputs=["tiles"], outputs=["return"])``
    · ``with provml.training("fit") as run: ...`` · ``async with provml.training(): ...``

    Options (all keyword-only, all optional):
        name: the stage's name (default: the function's qualified name).
        inputs: argument names recorded as data used (a ``str`` there is a file path).
        outputs: argument names recorded as data generated after the call (files the
            function writes), and ``"return"`` for the return value.
        params: argument names recorded as hyperparameters.
        capture_args: classify the other arguments by type (numbers and strings become
            hyperparameters, paths/arrays/frames/bytes data used, estimators their
            ``get_params()``); default True.
        capture_return: record a data-like return value as generated; default True.
        ignore: argument names never recorded (``self``/``cls`` are never recorded).
    """

    def __init__(self, stage: str | None, doc: str) -> None:
        if stage is not None and stage not in ML_CLASS_BY_NAME:
            raise ValueError(f"{stage!r} is not a PROV-ML stage")
        self._stage = stage
        self.__doc__ = f"{doc}\n\n{StageFactory.__doc__}"

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def __call__(
        self,
        name: str | None = None,
        /,
        *,
        inputs: Sequence[str] | str | None = None,
        outputs: Sequence[str] | str | None = None,
        params: Sequence[str] | str | None = None,
        capture_args: bool = True,
        capture_return: bool = True,
        ignore: Sequence[str] | str | None = None,
        stage: str | None = None,
    ) -> Stage: ...

    def __call__(self, fn_or_name: Any = None, /, **options: Any) -> Any:
        if not options and (fn_or_name is None or type(fn_or_name) is str):
            # ``with provml.training("fit"):`` in a loop: one shared, stateless Stage.
            return _shared_stage(self._stage, fn_or_name, None)
        stage = self._stage
        if "stage" in options:
            requested = options.pop("stage")
            if requested is not None and requested not in ML_CLASS_BY_NAME:
                log_once(
                    f"stage:{requested}",
                    "provml capture: %r is not a PROV-ML stage class (e.g. 'LearningStage', "
                    "'Training'); recording a generic activity",
                    requested,
                )
            elif requested is not None:
                stage = requested
        if callable(fn_or_name) and not isinstance(fn_or_name, str):
            return Stage(stage, **options)(fn_or_name)
        if fn_or_name is not None:
            options["name"] = fn_or_name
        return Stage(stage, **options)

    def __repr__(self) -> str:
        return f"<provml stage {self._stage or 'activity'}>"


def section(name: str = "epoch", step: int | None = None) -> Stage:
    """A learning stage section (an epoch, a batch) inside the current stage.

    ``with provml.section("epoch", step=3): ... provml.log_metric("loss", 0.1)`` records a
    ``LearningStageSectionExecution`` informed by the enclosing stage; metrics logged in
    it are generated by the section and default to its step.
    """
    return _shared_stage(SECTION, name, step)


_shared_stages: dict[tuple[str | None, str | None, Any], Stage] = {}


def _shared_stage(stage: str | None, name: str | None, step: Any) -> Stage:
    """Stages are stateless (an activity remembers the Stage that opened it), so equal
    ones are shared: a ``with`` block in a hot loop skips building options and specs."""
    key = (stage, name, step)
    try:
        return _shared_stages[key]
    except (KeyError, TypeError):
        pass
    options: dict[str, Any] = {}
    if name is not None:
        options["name"] = name
    if stage == SECTION:
        options.update(step=step, capture_args=False)
    made = Stage(stage, **options)
    try:
        if len(_shared_stages) > 4096:
            _shared_stages.clear()
        _shared_stages[key] = made
    except TypeError:  # an unhashable step: not shared
        pass
    return made
