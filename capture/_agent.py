"""Who and what ran the workflow: the Persona (a person) and the software agent.

Computed once per process, lazily on the exporter thread (``git rev-parse`` and package
metadata are I/O, which the caller's thread never does).

Imports: standard library and ``provml.ids`` only.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from provml import ids

#: Import names of the libraries whose versions matter to an ML result, and their
#: distribution names where they differ. Recorded when the workflow imported them.
KNOWN_PACKAGES = {
    "numpy": "numpy",
    "pandas": "pandas",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "mlflow": "mlflow",
    "provml": "provml",
}


@dataclass(frozen=True, slots=True)
class AgentInfo:
    user: str
    host: str
    python_version: str
    package_versions: str
    code_version: str | None
    workflow: str

    def person_iri(self, base: str) -> str:
        return ids.iri("agent", "person", self.user, base=base)

    def software_iri(self, base: str) -> str:
        # Content-addressed: the same code, environment and host are the same agent.
        key = "\n".join(
            (
                self.workflow,
                self.host,
                self.python_version,
                self.package_versions,
                self.code_version or "",
            )
        )
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        return ids.iri("agent", "software", digest, base=base)


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers): fall back to the uid
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def git_commit(directory: Path) -> str | None:
    """``git rev-parse HEAD`` of the workflow code's directory, if it is in a git work tree."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def code_directory() -> Path:
    """Where the workflow code lives: the main script's directory, else the working one."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return Path(path).resolve().parent
    return Path.cwd()


def package_versions(extra: tuple[str, ...]) -> str:
    names = [name for name in KNOWN_PACKAGES if name in sys.modules] + list(extra)
    out = []
    for name in dict.fromkeys(names):
        dist = KNOWN_PACKAGES.get(name, name)
        # An imported module's own __version__ first: importlib.metadata scans every
        # sys.path entry for each name, tens of milliseconds a job.
        version = getattr(sys.modules.get(name), "__version__", None)
        if not isinstance(version, str):
            try:
                version = metadata.version(dist)
            except Exception:
                version = None
        if version:
            out.append(f"{dist}=={version}")
    return "; ".join(sorted(out))


def collect(user: str, workflow: str, packages: tuple[str, ...]) -> AgentInfo:
    return AgentInfo(
        user=user,
        host=socket.gethostname(),
        python_version=platform.python_version(),
        package_versions=package_versions(packages),
        code_version=git_commit(code_directory()),
        workflow=workflow,
    )
