#!/usr/bin/env bash
# Create the capture benchmark's own virtualenv: provml (editable, with the server and
# demo extras) plus the peers it is compared with (requirements.txt beside this file).
#
#   bash bench/capture/setup.sh            # venv at $BENCH_VENV, default /tmp/bench-venv
#
# torch goes in first, pinned to the CPU build this machine keeps on disk, so that
# resolving yProv4ML never pulls a multi-GB CUDA build from the registry.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${BENCH_VENV:-/tmp/bench-venv}"
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e "$repo[server,demo]"
# Keep the torch just installed: the peers' requirements must not replace it.
# yProv4ML requires rdflib<7, so pip replaces the rdflib 7 of provml's server extra with
# 6.3.2 here (capture and the SQL store do not import rdflib).
"${pip[@]}" -r "$here/requirements.txt" "torch==2.13.0"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("provml", "torch", "numpy", "scikit-learn", "mlflow", "flowcept", "yprov4ml"):
    try:
        print(f"{name:14} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:14} NOT INSTALLED")
PY
