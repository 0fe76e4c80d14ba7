"""The ``provml`` command line.

Every command takes ``--store`` (or ``PROVML_STORE``; default the embedded store in
``./.provml``). Commands import what they need when they run, so ``provml --help``
stays fast. provml errors become one line on stderr naming what to fix, and exit 1.

Commands that read the RDF side (``query``, ``rdf``) own the Oxigraph store while they
run and first catch its projection up from the SQL outbox (see DESIGN.md, "two traps").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from provml.errors import ProvmlError

EXPORT_FORMATS = ("json", "xml", "provn", "turtle", "jsonld", "nquads", "trig")
QUERY_FORMATS = ("table", "json", "xml", "csv", "tsv", "turtle", "ntriples", "jsonld")


def _progress(total: int, label: str) -> Callable[[int], None]:
    """A progress line on stderr when it is a terminal; silent otherwise."""
    if not sys.stderr.isatty() or total < 2:
        return lambda done: None

    def show(done: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
        sys.stderr.flush()

    return show


def _open(args: argparse.Namespace):
    from provml.store import open_record_store

    return open_record_store(args.store)


def _open_rdf(args: argparse.Namespace, record_store):
    """Open the RDF side and catch its projection up with the SQL store."""
    from provml.config import resolve_store
    from provml.rdf import open_rdf_store

    rdf = open_rdf_store(resolve_store(args.store))
    while rdf.project(record_store):
        pass
    return rdf


# ---------------------------------------------------------------------------- commands


def cmd_db(args: argparse.Namespace) -> int:
    from provml.config import resolve_store
    from provml.store.sql import SQLStore

    location = resolve_store(args.store)
    if location.embedded:
        Path(location.sql_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    store = SQLStore(location.sql_url)
    try:
        if args.action == "upgrade":
            before = store.current_revision()
            store.upgrade()
            after = store.current_revision()
            print(f"schema at {after} (was {before or 'empty'}) in {location.sql_url}")
        else:
            current, head = store.current_revision(), store.head_revision()
            state = "current" if current == head else f"behind {head}: run provml db upgrade"
            print(f"{current or 'empty'} ({state})")
    finally:
        store.close()
    return 0


def _document_iri(data: bytes) -> str:
    from provml.ids import iri

    return iri("document", hashlib.blake2b(data, digest_size=16).hexdigest())


def _is_mlflow_import(args: argparse.Namespace) -> bool:
    """``provml import mlflow …``: the word ``mlflow`` alone, unless it names a file and no
    MLflow option was given (``provml import FILE`` keeps working for a file so named)."""
    if args.files != ["mlflow"]:
        if args.tracking_uri or args.experiment or args.registry_uri:
            raise ProvmlError(
                "--tracking-uri, --experiment and --registry-uri go with: provml import mlflow"
            )
        return False
    given = args.tracking_uri or args.experiment or args.registry_uri
    return bool(given) or not Path("mlflow").exists()


def cmd_import_mlflow(args: argparse.Namespace) -> int:
    from provml.mlflow_import import import_mlflow

    shown: dict[str, Callable[[int], None]] = {}

    def progress(done: int, total: int) -> None:
        show = shown.get("show")
        if show is None:
            show = shown["show"] = _progress(total, "importing MLflow runs")
        show(done)

    store = _open(args)
    try:
        result = import_mlflow(
            store,
            args.tracking_uri,
            experiments=args.experiment or (),
            registry_uri=args.registry_uri,
            progress=progress,
        )
    finally:
        store.close()
    print(
        f"mlflow {args.tracking_uri or '(MLFLOW_TRACKING_URI)'}: {result.runs} runs in "
        f"{result.experiments} experiment(s): {result.new_runs} new, "
        f"{result.updated_runs} updated (were running), {result.known_runs} already imported; "
        f"{result.model_versions} model versions ({result.new_model_versions} new); "
        f"{result.inserted} records stored"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from provml import prov_io

    if _is_mlflow_import(args):
        return cmd_import_mlflow(args)
    store = _open(args)
    try:
        show = _progress(len(args.files), "importing")
        for n, name in enumerate(args.files, 1):
            path = Path(name)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ProvmlError(f"{name}: cannot read: {exc.strerror}") from None
            fmt = args.format or prov_io.detect_format(filename=name, data=data)
            bundle_id = args.bundle or _document_iri(data)
            try:
                bundles = prov_io.parse(data, fmt, bundle_id=bundle_id, filename=name)
            except ProvmlError as exc:
                exc.message = f"{name}: {exc.message}"
                raise
            result = store.ingest(bundles)
            records = sum(len(b.records) for b in bundles)
            print(
                f"{name}: {records} records in {len(bundles)} bundle(s) as <{bundle_id}> "
                f"({result.inserted} new, {result.unchanged} already stored, "
                f"{result.merged} merged)"
            )
            show(n)
    finally:
        store.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from provml import prov_io
    from provml.ids import iri
    from provml.records import Bundle

    store = _open(args)
    try:
        if args.bundle:
            bundles = store.document(args.bundle)
        else:
            # The whole store: an empty document whose bundles are every stored bundle.
            bundles = [Bundle(iri("export")), *store.iter_bundles()]
        data = prov_io.serialize(bundles, args.format)
    finally:
        store.close()
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {len(data)} bytes of {args.format} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        if not data.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
    return 0


def _print_graph(graph, fmt: str) -> None:
    from provml.views import format_table, lineage_view

    if fmt == "json":
        print(json.dumps(lineage_view(graph), indent=2))
        return
    rows = sorted(graph.nodes.values(), key=lambda n: (graph.distance.get(n.id, 0), n.id))
    print(
        format_table(
            ["depth", "class", "kind", "label", "id"],
            [
                [graph.distance.get(n.id, 0), n.ml_class or "", n.kind, n.label or "", n.id]
                for n in rows
            ],
            max_width=100,
        )
    )
    more = " (truncated by a bound)" if graph.truncated else ""
    print(f"\n{len(graph.nodes)} nodes, {len(graph.edges)} relations{more}")


def cmd_lineage(args: argparse.Namespace) -> int:
    from provml import lineage

    walk = {"up": lineage.upstream, "down": lineage.downstream, "impact": lineage.impact}
    store = _open(args)
    try:
        graph = walk[args.direction](
            store, args.iri, depth=args.depth, stop_at=tuple(args.stop_at or ())
        )
    finally:
        store.close()
    _print_graph(graph, args.format)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.sparql == "-" else args.sparql
    store = _open(args)
    try:
        rdf = _open_rdf(args, store)
    finally:
        store.close()
    try:
        result = rdf.query(text, timeout=args.timeout)
        if args.format == "table":
            print(result.table())
        else:
            sys.stdout.buffer.write(result.serialize(args.format))
            sys.stdout.buffer.write(b"\n")
    finally:
        rdf.close()
    return 0


def cmd_rdf(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        from provml.config import resolve_store
        from provml.rdf import open_rdf_store

        rdf = open_rdf_store(resolve_store(args.store))
        try:
            if args.action == "rebuild":
                total = len(store.list_bundles())
                count = rdf.rebuild(store, progress=_progress(total, "projecting"))
                print(f"rebuilt the RDF store from {total} bundles: {count} quads")
            else:
                done = 0
                while n := rdf.project(store):
                    done += n
                print(f"projected {done} pending bundle(s); {rdf.count()} quads in the RDF store")
        finally:
            rdf.close()
    finally:
        store.close()
    return 0


def cmd_bundles(args: argparse.Namespace) -> int:
    from provml.views import format_table

    store = _open(args)
    try:
        rows = [
            [b.created.isoformat(timespec="seconds"), b.records, b.parent or "", b.id]
            for b in store.list_bundles()
        ]
    finally:
        store.close()
    print(format_table(["created", "records", "parent", "bundle"], rows, max_width=100))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from provml.views import node_view

    store = _open(args)
    try:
        print(json.dumps(node_view(store.get_node(args.iri)), indent=2))
    finally:
        store.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    try:
        import uvicorn
    except ImportError:
        from provml.errors import MissingExtra

        raise MissingExtra("uvicorn", "server") from None
    from provml.api._services import open_sql_store
    from provml.config import resolve_store

    # Refuse here, with one line naming `provml db upgrade`, rather than in a worker.
    open_sql_store(resolve_store(args.store)).close()
    if args.store:
        # Every worker process builds its app from the environment (uvicorn --factory).
        os.environ["PROVML_STORE"] = args.store
    uvicorn.run(
        "provml.api:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from provml.demo import run_demo

    return run_demo(store=args.store, fresh=not args.keep)


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        metavar="URL",
        help="store directory or URL (sqlite:///file, postgresql+psycopg://…); "
        "default $PROVML_STORE or ./.provml",
    )
    parser = argparse.ArgumentParser(
        prog="provml", description="W3C PROV provenance for machine-learning workflows."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str):
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("serve", cmd_serve, "run the HTTP service (ingest, lineage, SPARQL, export)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )

    p = add("demo", cmd_demo, "run the demo workflows into a fresh embedded store")
    p.add_argument("--keep", action="store_true", help="keep what the store already holds")

    p = add("db", cmd_db, "manage the SQL schema")
    p.add_argument("action", choices=["upgrade", "current"])

    p = add(
        "import",
        cmd_import,
        "import PROV documents (PROV-JSON, PROV-XML, PROV-N, Turtle…), "
        "or an MLflow tracking store: import mlflow --tracking-uri URI",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", help="the documents' format (default: from name and content)")
    p.add_argument("--bundle", metavar="IRI", help="bundle IRI (default: from the content)")
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="with `import mlflow`: the MLflow tracking URI (default $MLFLOW_TRACKING_URI)",
    )
    p.add_argument(
        "--experiment",
        action="append",
        metavar="NAME",
        help="with `import mlflow`: an experiment to import (repeatable; default all)",
    )
    p.add_argument(
        "--registry-uri", metavar="URI", help="with `import mlflow`: the model registry URI"
    )

    p = add("export", cmd_export, "export a bundle (or the whole store) as a PROV document")
    p.add_argument("bundle", nargs="?", metavar="BUNDLE", help="bundle IRI (default: all)")
    p.add_argument("--format", "-f", choices=EXPORT_FORMATS, default="json")
    p.add_argument("--output", "-o", metavar="FILE")

    p = add("lineage", cmd_lineage, "upstream, downstream or impact lineage of a node")
    p.add_argument("iri")
    p.add_argument("--direction", "-d", choices=["up", "down", "impact"], default="up")
    p.add_argument("--depth", type=int, help="how many relations away (default: no limit)")
    p.add_argument("--stop-at", nargs="*", metavar="CLASS", help="PROV-ML classes not walked past")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = add("query", cmd_query, "run a read-only SPARQL 1.1 query")
    p.add_argument("sparql", help="the query text, or - to read it from stdin")
    p.add_argument("--format", "-f", choices=QUERY_FORMATS, default="table")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")

    p = add("rdf", cmd_rdf, "maintain the RDF projection")
    p.add_argument("action", choices=["rebuild", "project"])

    add("bundles", cmd_bundles, "list the stored bundles")
    p = add("show", cmd_show, "one node with its attributes")
    p.add_argument("iri")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ProvmlError as exc:
        _report(exc.message, exc.details.items())
        return 1
    except KeyboardInterrupt:
        return 130


def _report(message: str, details: Iterable[tuple[str, Any]]) -> None:
    extra = ", ".join(f"{k}={v}" for k, v in details if k not in ("module",))
    print(f"provml: error: {message}" + (f" ({extra})" if extra else ""), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
