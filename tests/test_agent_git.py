"""The workflow code's commit, read from ``.git`` itself, is what ``git rev-parse HEAD`` says.

Real repositories made with ``git`` in a temporary directory: a branch, a detached
HEAD, packed references, a linked worktree, a separate git directory (the layout of a
submodule). The plain layouts are read without starting ``git``; anything else is
still answered by ``git`` itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from provml.capture import _agent

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def plain_git_environment(monkeypatch, tmp_path):
    for name in _agent._GIT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=os.environ
    )
    return done.stdout.strip()


def rev_parse(cwd: Path) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def repository(path: Path, commits: int = 2) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "src").mkdir()
    for n in range(commits):
        (path / "src" / "train.py").write_text(f"print({n})\n")
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", f"commit {n}")
    return path


def read(directory: Path) -> str | None:
    """The commit as capture reads it, with ``git`` forbidden."""
    original = _agent.subprocess.run
    _agent.subprocess.run = _refuse
    try:
        return _agent.git_commit(directory)
    finally:
        _agent.subprocess.run = original


def _refuse(*args, **kwargs):
    raise AssertionError(f"git was started: {args}")


def test_a_branchs_commit_is_read_without_starting_git(tmp_path):
    repo = repository(tmp_path / "repo")
    expected = rev_parse(repo)
    assert expected and len(expected) == 40
    assert read(repo) == expected
    assert read(repo / "src") == expected


def test_a_detached_head_is_its_commit(tmp_path):
    repo = repository(tmp_path / "repo", commits=3)
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert read(repo / "src") == rev_parse(repo) == git(repo, "rev-parse", "main~1")


def test_packed_references_are_read(tmp_path):
    repo = repository(tmp_path / "repo")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert read(repo) == rev_parse(repo)


def test_a_loose_reference_wins_over_its_packed_older_value(tmp_path):
    repo = repository(tmp_path / "repo")
    git(repo, "pack-refs", "--all")
    (repo / "src" / "train.py").write_text("print('newer')\n")
    git(repo, "commit", "-q", "-am", "newer")
    assert read(repo) == rev_parse(repo)


def test_a_symbolic_reference_is_followed(tmp_path):
    repo = repository(tmp_path / "repo")
    git(repo, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    git(repo, "symbolic-ref", "HEAD", "refs/heads/alias")
    assert read(repo) == rev_parse(repo)


def test_a_linked_worktree_reads_its_own_head_and_the_shared_references(tmp_path):
    repo = repository(tmp_path / "repo", commits=3)
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"), "HEAD~2")
    git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "detached"), "HEAD~1")
    git(repo, "pack-refs", "--all")
    side, detached = tmp_path / "side", tmp_path / "detached"
    assert (side / ".git").is_file()
    assert read(side / "src") == rev_parse(side) == git(repo, "rev-parse", "main~2")
    assert read(detached) == rev_parse(detached) == git(repo, "rev-parse", "main~1")
    assert read(repo) == rev_parse(repo)


def test_a_separate_git_directory_as_submodules_have_is_read(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "modules").mkdir()
    git(work, "init", "-q", "-b", "main", "--separate-git-dir", str(tmp_path / "modules" / "w"))
    (work / "a.txt").write_text("a\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "one")
    assert (work / ".git").read_text().startswith("gitdir: ")
    assert read(work) == rev_parse(work)


def test_a_directory_outside_any_repository_has_no_commit(tmp_path):
    (tmp_path / "plain").mkdir()
    assert rev_parse(tmp_path / "plain") is None
    assert read(tmp_path / "plain") is None


def test_an_unborn_branch_is_left_to_git_which_has_no_commit(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    assert _agent.git_commit(repo) is None
    with pytest.raises(_agent._Unsure):
        _agent._read_head(repo)


def test_a_git_environment_variable_leaves_the_answer_to_git(tmp_path, monkeypatch):
    repo = repository(tmp_path / "repo")
    other = repository(tmp_path / "other", commits=1)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    with pytest.raises(_agent._Unsure):
        _agent._read_head(repo)
    assert _agent.git_commit(repo) == git(other, "rev-parse", "HEAD")


def test_a_damaged_head_is_left_to_git(tmp_path):
    repo = repository(tmp_path / "repo")
    (repo / ".git" / "HEAD").write_text("garbage\n")
    with pytest.raises(_agent._Unsure):
        _agent._read_head(repo)
    assert _agent.git_commit(repo) == rev_parse(repo)
