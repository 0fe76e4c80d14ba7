"""Who and what ran the workflow: the Persona (a person) and the software agent.

Computed once per process, lazily where records are built: on the exporter thread, or
in an explicit flush (the commit and package metadata are I/O, which the caller's thread
does nowhere else). The commit is read from the ``.git`` directory when its layout is
one this module knows, else asked of ``git rev-parse HEAD`` (a subprocess, ~1.5 ms).

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
        return _read_head(directory)
    except Exception:  # _Unsure, an unreadable file, a race with git: ask git itself
        return _rev_parse_head(directory)


def _rev_parse_head(directory: Path) -> str | None:
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


class _Unsure(Exception):
    """A layout or setting this reader does not follow: ``git`` itself must answer."""


#: Variables that change where git looks for the repository, or what HEAD is.
_GIT_ENVIRONMENT = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
)
#: References that belong to one worktree: read from its own git directory.
_PER_WORKTREE = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")
_HEX = frozenset("0123456789abcdef")


def _read_head(directory: Path) -> str | None:
    """The commit HEAD names, read from the files of a plain repository.

    Follows what ``git rev-parse HEAD`` does for the usual layouts: a ``.git``
    directory, or a ``.git`` file (``gitdir: …``) of a worktree or submodule whose
    references may live in a ``commondir``; HEAD a symbolic reference or detached;
    references loose or in ``packed-refs``. No repository up to the root or the edge
    of the file system is None. Anything else raises :class:`_Unsure`.
    """
    if any(name in os.environ for name in _GIT_ENVIRONMENT):
        raise _Unsure("git environment variables")
    start = directory.resolve()
    device = start.stat().st_dev
    for top in (start, *start.parents):
        if top.stat().st_dev != device:
            return None  # git stops at a file system's boundary: not a repository
        dotgit = top / ".git"
        if dotgit.is_dir():
            git_dir = dotgit
        elif dotgit.is_file():
            git_dir = _linked_git_dir(dotgit)
        elif os.path.lexists(dotgit):
            raise _Unsure("a .git that is neither a directory nor a file")
        elif (top / "HEAD").is_file() and (top / "objects").is_dir():
            raise _Unsure("a bare repository or a git directory")
        else:
            continue
        if {top.stat().st_uid, git_dir.stat().st_uid} != {os.getuid()}:
            raise _Unsure("owned by another user: git's safe.directory decides")
        return _resolve_head(git_dir)
    return None


def _linked_git_dir(dotgit: Path) -> Path:
    text = dotgit.read_text()
    if not text.startswith("gitdir: "):
        raise _Unsure("a .git file without gitdir")
    git_dir = (dotgit.parent / text[len("gitdir: ") :].strip()).resolve()
    if not git_dir.is_dir():
        raise _Unsure("a .git file naming no directory")
    return git_dir


def _resolve_head(git_dir: Path) -> str:
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
    if (common / "reftable").exists():
        raise _Unsure("reftable references")
    value = (git_dir / "HEAD").read_text().strip()
    for _ in range(5):  # git follows symbolic references at most 5 deep
        if not value.startswith("ref: "):
            return _commit(value)
        name = value[len("ref: ") :].strip()
        if not name.startswith("refs/") or ".." in name:
            raise _Unsure(f"an unusual reference {name!r}")
        where = git_dir if name.startswith(_PER_WORKTREE) else common
        try:
            value = (where / name).read_text().strip()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            value = _packed(common, name)
    raise _Unsure("symbolic references too deep")


def _packed(common: Path, name: str) -> str:
    try:
        text = (common / "packed-refs").read_text()
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        if line[:1] in ("#", "^"):
            continue
        commit, _, ref = line.partition(" ")
        if ref == name:
            return commit
    raise _Unsure(f"{name} neither loose nor packed (an unborn branch?)")


def _commit(value: str) -> str:
    if len(value) in (40, 64) and _HEX.issuperset(value):
        return value
    raise _Unsure(f"not an object name: {value[:80]!r}")


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
