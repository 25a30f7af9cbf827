"""``normalize-mtimes`` on real trees and real git: which times, from where, what is left alone.

The end-to-end proof with ``go test`` through the helper is tests/e2e/test_test_cache.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redis_gocache import mtimes
from redis_gocache.mtimes import (
    WINDOW_NS,
    WINDOW_START_NS,
    dir_time,
    file_time,
    link_time,
    normalize,
)

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}

TREE = {
    "go.mod": "module example.com/t\n",
    "a/data.txt": "hello\n",
    "a/same.txt": "hello\n",
    "a/deep/er/x.bin": "\x00\x01binary",
    "b/other.txt": "other\n",
    "run.sh": "#!/bin/sh\necho hi\n",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


def write_tree(root: Path) -> Path:
    for name, text in TREE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "run.sh").chmod(0o755)
    (root / "a" / "link").symlink_to("data.txt")
    (root / "b" / "dirlink").symlink_to("../a/deep")
    return root


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = write_tree(tmp_path / "origin")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    return repo


def clone(origin: Path, to: Path) -> Path:
    git(origin.parent, "clone", "-q", "--no-hardlinks", str(origin), str(to))
    return to


def times(root: Path) -> dict[str, int]:
    """Every path under root (not in .git) -> its own mtime (lstat) in ns."""
    out = {".": root.lstat().st_mtime_ns}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in dirnames + filenames:
            if name == ".git":
                continue
            path = Path(dirpath, name)
            out[str(path.relative_to(root))] = path.lstat().st_mtime_ns
    return out


def test_times_are_old_distinct_and_to_the_nanosecond() -> None:
    now = time.time_ns()
    values = {file_time(f"{i:040x}", 6) for i in range(2000)}
    assert len(values) == 2000
    assert all(WINDOW_START_NS <= v < WINDOW_START_NS + WINDOW_NS < now - 5 * 365 * 86400e9
               for v in values)
    assert len({v % 10**9 for v in values}) > 1900  # the nanoseconds are used too
    assert file_time("ab" * 20, 5) != file_time("ab" * 20, 6)
    assert link_time(b"x") != link_time(b"y")
    assert dir_time([(b"a", b"f"), (b"b", b"d")]) == dir_time([(b"b", b"d"), (b"a", b"f")])
    assert dir_time([(b"a", b"f")]) != dir_time([(b"a", b"d")])
    assert dir_time([(b"a", b"f")]) != dir_time([(b"a", b"f"), (b"b", b"f")])


def test_blob_id_is_gits(tmp_path: Path) -> None:
    path = tmp_path / "f"
    for content in (b"", b"hello\n", os.urandom(3 << 20)):
        path.write_bytes(content)
        want = subprocess.run(["git", "hash-object", str(path)], capture_output=True,
                              text=True, check=True).stdout.strip()
        fd = os.open(path, os.O_RDONLY)
        try:
            assert mtimes.blob_id(fd, len(content)) == want
        finally:
            os.close(fd)


def test_clean_clone_takes_blob_ids_from_git_and_matches_hashing(origin: Path,
                                                                   tmp_path: Path) -> None:
    one = clone(origin, tmp_path / "one")
    result = normalize(str(one))
    assert result.git and not result.errors
    assert (result.files, result.hashed, result.from_index) == (6, 0, 6)
    assert result.links == 2 and result.dirs == 5  # ., a, a/deep, a/deep/er, b
    assert result.changed == result.files + result.dirs + result.links
    # Another clone, made later, hashed file by file without git: the same times.
    two = clone(origin, tmp_path / "two")
    assert times(two) != times(one)
    plain = normalize(str(two), use_git=False)
    assert not plain.git and plain.hashed == 6 and not plain.errors
    got = times(two)
    assert {k: v for k, v in got.items() if k != "."} == {
        k: v for k, v in times(one).items() if k != "."}
    assert got["."] == times(one)["."]  # .git is a directory in both
    for ns in got.values():
        assert WINDOW_START_NS <= ns < WINDOW_START_NS + WINDOW_NS
    # Same content, same time; the link's time is its own, not its target's.
    assert got["a/data.txt"] == got["a/same.txt"] != got["b/other.txt"]
    assert got["a/link"] == link_time(b"data.txt") != got["a/data.txt"]
    assert git(one, "status", "--porcelain") == ""


def test_idempotent_and_leaves_git_index_fresh(origin: Path, tmp_path: Path) -> None:
    one = clone(origin, tmp_path / "one")
    first = normalize(str(one))
    before = times(one)
    ctimes = {p: (one / p).lstat().st_ctime_ns for p in before}
    again = normalize(str(one))
    assert again.changed == 0 and not again.errors
    assert times(one) == before
    assert {p: (one / p).lstat().st_ctime_ns for p in before} == ctimes  # nothing touched
    assert first.refresh_seconds > 0 and again.refresh_seconds == 0
    # The refresh recorded the new times: git's index agrees with the files on disk.
    out = git(one, "ls-files", "--debug", "a/data.txt")
    mtime = before["a/data.txt"]
    assert f"mtime: {mtime // 10**9}:{mtime % 10**9}" in out, out


def test_local_changes_and_untracked_files_are_hashed(origin: Path, tmp_path: Path) -> None:
    one = clone(origin, tmp_path / "one")
    normalize(str(one))
    clean = times(one)
    (one / "a" / "data.txt").write_text("jello\n")  # the same size, other content
    (one / "b" / "new.txt").write_text("untracked\n")
    (one / "a" / "ignored.log").write_text("log\n")
    (one / ".gitignore").write_text("*.log\n")
    result = normalize(str(one))
    assert not result.errors
    assert result.hashed == 4  # data.txt, new.txt, ignored.log, .gitignore
    got = times(one)
    assert got["a/data.txt"] != clean["a/data.txt"]
    assert got["a/same.txt"] == clean["a/same.txt"]
    assert got["a"] != clean["a"] and got["b"] != clean["b"]  # new names
    # The same content outside git gets the same times, file for file.
    plain = tmp_path / "plain"
    shutil.copytree(one, plain, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    normalize(str(plain))
    want = {k: v for k, v in got.items() if k != "."}
    assert {k: v for k, v in times(plain).items() if k != "."} == want
    # A staged change, then the file put back as committed: the index blob is the staged one.
    (one / "a" / "data.txt").write_text("hello\n")
    git(one, "add", "a/data.txt")
    (one / "b" / "other.txt").write_text("OTHER\n")
    git(one, "add", "b/other.txt")
    (one / "b" / "other.txt").write_text("other\n")
    normalize(str(one))
    got = times(one)
    assert got["a/data.txt"] == clean["a/data.txt"]
    assert got["b/other.txt"] == clean["b/other.txt"]


def test_files_git_was_told_to_ignore_are_hashed(origin: Path, tmp_path: Path) -> None:
    one = clone(origin, tmp_path / "one")
    git(one, "update-index", "--assume-unchanged", "a/data.txt")
    git(one, "update-index", "--skip-worktree", "b/other.txt")
    (one / "a" / "data.txt").write_text("jello\n")
    (one / "b" / "other.txt").write_text("OTHER\n")
    assert git(one, "status", "--porcelain") == ""  # git does not see them
    result = normalize(str(one))
    assert result.hashed == 2 and result.from_index == 4
    plain = tmp_path / "plain"
    write_tree(plain)
    (plain / "a" / "data.txt").write_text("jello\n")
    (plain / "b" / "other.txt").write_text("OTHER\n")
    normalize(str(plain))
    assert times(one)["a/data.txt"] == times(plain)["a/data.txt"]
    assert times(one)["b/other.txt"] == times(plain)["b/other.txt"]


def test_a_subdirectory_of_a_repository(origin: Path, tmp_path: Path) -> None:
    one = clone(origin, tmp_path / "one")
    (one / "a" / "data.txt").write_text("jello\n")
    top = (one / "b").lstat().st_mtime_ns
    result = normalize(str(one / "a"))
    assert result.git and not result.errors
    assert (result.files, result.hashed) == (3, 1)  # data.txt, same.txt, deep/er/x.bin
    assert (one / "a" / "data.txt").lstat().st_mtime_ns == file_time(
        subprocess.run(["git", "hash-object", "a/data.txt"], cwd=one, capture_output=True,
                       text=True, check=True).stdout.strip(), 6)
    assert (one / "b").lstat().st_mtime_ns == top  # outside DIR: untouched


def test_never_follows_a_symlink_or_touches_git(tmp_path: Path, origin: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.utime(outside / "secret", ns=(123, 456))
    os.utime(outside, ns=(123, 456))
    one = clone(origin, tmp_path / "one")
    (one / "out").symlink_to(outside)
    (one / "a" / "out-file").symlink_to(outside / "secret")
    (one / "a" / "dangling").symlink_to("nowhere")
    git_times = {p: p.lstat().st_mtime_ns for p in (one / ".git").rglob("*")}
    result = normalize(str(one))
    assert not result.errors, result.errors
    assert outside.stat().st_mtime_ns == 456 and (outside / "secret").stat().st_mtime_ns == 456
    assert (one / "out").lstat().st_mtime_ns == link_time(os.fsencode(outside))
    assert (one / "a" / "dangling").lstat().st_mtime_ns == link_time(b"nowhere")
    assert {p: p.lstat().st_mtime_ns for p in (one / ".git").rglob("*")
            if p.name not in ("index",)} == {p: t for p, t in git_times.items()
                                             if p.name not in ("index",)}


def test_directory_time_follows_names_and_kinds(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "t")
    normalize(str(root))
    before = times(root)
    (root / "b" / "other.txt").write_text("changed content\n")
    normalize(str(root))
    assert times(root)["b"] == before["b"]  # content is the file's business
    assert times(root)["b/other.txt"] != before["b/other.txt"]
    (root / "b" / "other.txt").rename(root / "b" / "renamed.txt")
    normalize(str(root))
    assert times(root)["b"] != before["b"]


def test_fifo_is_listed_not_touched(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "t")
    os.mkfifo(root / "a" / "pipe")
    os.utime(root / "a" / "pipe", ns=(7, 7))
    result = normalize(str(root))
    assert not result.errors
    assert (root / "a" / "pipe").lstat().st_mtime_ns == 7


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "GO"))}
    return subprocess.run([sys.executable, "-m", "redis_gocache", "normalize-mtimes", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_cli_one_line_and_verbose(origin: Path, tmp_path: Path) -> None:
    one = clone(origin, tmp_path / "one")
    proc = run_cli(cwd=one)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and proc.stderr == ""
    assert lines[0].startswith(f"normalize-mtimes: {one}: 6 files, 5 directories, 2 symlinks; "
                               "13 times set, 0 already right; 6 files from git's index, "
                               "0 hashed; "), lines
    proc = run_cli("-v", str(one / "a"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 8 and "0 times set" in lines[-1], lines
    assert any(line.startswith("kept  ") and line.endswith("  file     data.txt")
               for line in lines), lines
    missing = run_cli(str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_every_recipe_normalizes_before_go_test() -> None:
    """The docs' CI recipes that check out and test run the command in between."""
    root = Path(__file__).resolve().parent.parent
    for doc in ("docs/kubernetes.md", "README.md"):
        blocks = re.findall(r"```[a-z]*\n(.*?)```", (root / doc).read_text(), re.S)
        runs = [b for b in blocks if "go test ./" in b and any(
            step in b for step in ("git clone", "actions/checkout", "script:"))]
        assert runs, doc
        for block in runs:
            assert "redis-gocache normalize-mtimes" in block, (doc, block)
            assert block.index("normalize-mtimes") < block.index("go test"), (doc, block)
