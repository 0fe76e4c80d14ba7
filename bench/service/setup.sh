#!/usr/bin/env bash
# The service benchmark's own venv: provml with the server extra plus the peers it is
# compared with (an MLflow tracking server, rdflib-endpoint). Kept apart from the
# project's venv so that the peers never become provml dependencies.
set -euo pipefail
VENV="${1:-/tmp/bench-service-venv}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e "$ROOT[server]" httpx psycopg mlflow rdflib-endpoint uvicorn
echo "benchmark venv ready: $VENV/bin/python $ROOT/bench/service/bench_service.py"
