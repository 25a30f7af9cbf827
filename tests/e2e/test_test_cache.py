"""``go test`` results shared across fresh checkouts, through the helper and a real Redis.

Every runner here is a new CI pod: an empty GOCACHE, an empty helper directory, the one Redis
of this module, and a fresh ``git clone`` to the same path (:data:`CHECKOUT`, removed between
runners, so every file has a new modification time). The module's tests read a testdata
file, list a testdata directory and read a file through a symlink: cmd/go keys their results
on those files' modification times, so without ``normalize-mtimes`` they run again on every
runner, and with a fixed time (``touch``) a same-size edit is served a stale result. Both
controls are asserted too, so these tests cannot pass with a constant time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gocmd import go_quote, helper_command, helper_env
from tests.redisproc import RedisServer

pytestmark = pytest.mark.e2e

GO_TIMEOUT = 240.0
"""Seconds one ``go`` command may take (a cold build of the test dependencies is ~20 s)."""

PACKAGES = ("readfile", "listdir", "symlink", "plain")
"""The packages with tests; ``imports`` has none (it is built through ``cmd/name``)."""

IMPORTS_V1 = ('package imports\n\nimport "strings"\n\n'
              'func Name() string { return strings.ToUpper("ab") }\n')
IMPORTS_V3 = ('package imports\n\nimport "strconv"\n\n'
              'func Name() string { return strconv.Quote("ab")   }\n')
"""``imports/imports.go`` before and after a change of its import line, of the same size."""

MODULE = {
    "go.mod": "module example.com/tc\n\ngo 1.22\n",
    "readfile/testdata/greeting.txt": "hello\n",
    "readfile/readfile_test.go": """package readfile

import (
	"os"
	"testing"
)

func TestGreeting(t *testing.T) {
	b, err := os.ReadFile("testdata/greeting.txt")
	if err != nil || string(b) != "hello\\n" {
		t.Fatalf("greeting = %q, %v", b, err)
	}
}
""",
    "listdir/testdata/a.txt": "a\n",
    "listdir/testdata/b.txt": "b\n",
    "listdir/listdir_test.go": """package listdir

import (
	"os"
	"testing"
)

func TestList(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil || len(entries) < 2 {
		t.Fatalf("entries = %v, %v", entries, err)
	}
}
""",
    "shared/data.txt": "shared\n",
    "symlink/symlink_test.go": """package symlink

import (
	"os"
	"testing"
)

func TestThroughLink(t *testing.T) {
	b, err := os.ReadFile("testdata/link.txt")
	if err != nil || string(b) != "shared\\n" {
		t.Fatalf("link = %q, %v", b, err)
	}
}
""",
    "plain/plain_test.go": """package plain

import "testing"

func TestSum(t *testing.T) {
	if 6*7 != 42 {
		t.Fatal("arithmetic")
	}
}
""",
    "imports/imports.go": IMPORTS_V1,
    "cmd/name/main.go": """package main

import (
	"fmt"

	"example.com/tc/imports"
)

func main() { fmt.Println(imports.Name()) }
""",
}

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}

RESULT = re.compile(r"^(ok|FAIL|\?)\s+example\.com/tc/(\w+)\s+(\S.*)$", re.M)


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


class Runner:
    """A new CI pod: its own empty GOCACHE and helper directory, the shared Redis, and a
    fresh checkout at ``path``."""

    count = 0

    def __init__(self, base: Path, path: Path, go_env: dict[str, str], redis_url: str) -> None:
        Runner.count += 1
        home = base / f"runner-{Runner.count}"
        (home / "gocache").mkdir(parents=True)
        env = {**helper_env(home / "helper", redis_url), **go_env}
        # gocachetest=1: cmd/go says on stderr why a test result was not taken from the
        # cache, which the assertions show. Every runner sets it: GODEBUG is a test input.
        # A generous Redis timeout: on a loaded machine an upload that times out stays
        # local (by design), and the next runner would miss for a reason not tested here.
        env.update(GOCACHE=str(home / "gocache"), GOCACHEPROG=go_quote(helper_command()),
                   REDIS_URL=redis_url, GODEBUG="gocachetest=1", REDIS_GOCACHE_TIMEOUT="5",
                   REDIS_GOCACHE_STATS_FILE=str(home / "stats.jsonl"))
        self.env, self.path, self.home = env, path, home

    def clone(self, origin: Path, rev: str) -> Runner:
        shutil.rmtree(self.path, ignore_errors=True)
        git(origin.parent, "clone", "-q", "--branch", rev, str(origin), str(self.path))
        return self

    def normalize(self) -> str:
        proc = subprocess.run([*helper_command(), "normalize-mtimes"], cwd=self.path,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("normalize-mtimes: "), proc
        return proc.stdout

    def touch(self) -> None:
        """What CI recipes do instead: one fixed time for everything (unsafe)."""
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in dirnames + filenames:
                os.utime(os.path.join(dirpath, name), (978307200, 978307200),
                         follow_symlinks=False)

    def upload_errors(self) -> int:
        """Failed uploads to Redis over every helper run of this runner so far."""
        lines = (self.home / "stats.jsonl").read_text().splitlines()
        return sum(json.loads(line)["upload_errors"] for line in lines)

    def go(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["go", *args], cwd=self.path, env=self.env, capture_output=True,
                              text=True, timeout=GO_TIMEOUT, stdin=subprocess.DEVNULL)

    def test(self, want: dict[str, str]) -> None:
        """``go test`` of want's packages; each must be "cached", "ran" (and passed) or
        "FAIL"."""
        proc = self.go("test", *(f"./{p}" for p in want))
        log = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-6000:]}"
        found = {}
        for status, pkg, rest in RESULT.findall(proc.stdout):
            found[pkg] = ("FAIL" if status == "FAIL" else
                          "cached" if rest.strip() == "(cached)" else "ran")
        assert found == want, log
        assert (proc.returncode != 0) == ("FAIL" in found.values()), log

    def name(self) -> subprocess.CompletedProcess[str]:
        """Build ``cmd/name`` and run it: prints ``imports.Name()``."""
        binary = self.home / "name"
        proc = self.go("build", "-o", str(binary), "./cmd/name")
        if proc.returncode != 0:
            return proc
        return subprocess.run([str(binary)], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis of this module alone: the runners share it and nothing flushes it."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("testcache")


@pytest.fixture(scope="module")
def origin(base: Path) -> Path:
    """The repository: v1; v2 changes the greeting (same size); v3 (from v1) changes an
    import line (same file size)."""
    repo = base / "origin"
    for name, text in MODULE.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (repo / "symlink" / "testdata").mkdir(parents=True)
    (repo / "symlink" / "testdata" / "link.txt").symlink_to("../../shared/data.txt")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    (repo / "readfile" / "testdata" / "greeting.txt").write_text("jello\n")
    git(repo, "commit", "-qam", "v2")
    git(repo, "tag", "v2")
    git(repo, "checkout", "-q", "v1")
    assert len(IMPORTS_V3) == len(IMPORTS_V1)
    (repo / "imports" / "imports.go").write_text(IMPORTS_V3)
    git(repo, "commit", "-qam", "v3")
    git(repo, "tag", "v3")
    return repo


@pytest.fixture(scope="module")
def checkout(base: Path) -> Path:
    """The checkout path every runner uses, as CI systems do."""
    return base / "work" / "repo"


@pytest.fixture(scope="module")
def seeded(base: Path, origin: Path, checkout: Path, go_env: dict[str, str],
           redis_url: str) -> Runner:
    """Runner A: the first pod, cold; it fills Redis."""
    a = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    line = a.normalize()
    assert "11 files, " in line and "11 files from git's index, 0 hashed" in line, line
    a.test(dict.fromkeys(PACKAGES, "ran"))
    name = a.name()
    assert name.returncode == 0 and name.stdout == "AB\n", name
    assert a.upload_errors() == 0
    return a


def test_fresh_clone_after_normalize_is_cached(
    seeded: Runner, base: Path, origin: Path, checkout: Path, go_env: dict[str, str],
    redis_url: str,
) -> None:
    # Control: without normalize-mtimes every test that reads a file runs again.
    b0 = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    b0.test({"readfile": "ran", "listdir": "ran", "symlink": "ran", "plain": "cached"})
    b = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    b.normalize()
    b.test(dict.fromkeys(PACKAGES, "cached"))
    name = b.name()
    assert name.returncode == 0 and name.stdout == "AB\n", name


def test_same_size_testdata_change_reruns_and_fails(
    seeded: Runner, base: Path, origin: Path, checkout: Path, go_env: dict[str, str],
    redis_url: str,
) -> None:
    c = Runner(base, checkout, go_env, redis_url).clone(origin, "v2")
    c.normalize()
    c.test({"readfile": "FAIL", "listdir": "cached", "symlink": "cached", "plain": "cached"})
    # Control: with one fixed time for every file (touch), v2 is served v1's PASS.
    d = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    d.touch()
    d.test({"readfile": "ran"})
    e = Runner(base, checkout, go_env, redis_url).clone(origin, "v2")
    e.touch()
    e.test({"readfile": "cached"})  # the stale PASS that normalize-mtimes prevents


def test_same_size_import_change_builds_with_the_new_import(
    seeded: Runner, base: Path, origin: Path, checkout: Path, go_env: dict[str, str],
    redis_url: str,
) -> None:
    f = Runner(base, checkout, go_env, redis_url).clone(origin, "v3")
    f.normalize()
    name = f.name()
    assert name.returncode == 0 and name.stdout == '"ab"\n', name
    # Control: with a fixed time, cmd/go's package index from the shared cache is stale.
    g = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    g.touch()
    assert g.name().stdout == "AB\n"
    h = Runner(base, checkout, go_env, redis_url).clone(origin, "v3")
    h.touch()
    stale = h.name()
    assert stale.returncode != 0 and "could not import strconv" in stale.stderr, stale


def test_local_changes_and_untracked_files(
    seeded: Runner, base: Path, origin: Path, checkout: Path, go_env: dict[str, str],
    redis_url: str,
) -> None:
    def edit(runner: Runner) -> None:
        (runner.path / "readfile" / "testdata" / "greeting.txt").write_text("jello\n")
        (runner.path / "listdir" / "testdata" / "c.txt").write_text("untracked\n")

    i = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    edit(i)
    line = i.normalize()
    assert "10 files from git's index, 2 hashed" in line, line
    i.test({"readfile": "FAIL", "listdir": "ran", "symlink": "cached", "plain": "cached"})
    # Another pod with the same local changes shares the result of the untracked file's run.
    j = Runner(base, checkout, go_env, redis_url).clone(origin, "v1")
    edit(j)
    j.normalize()
    j.test({"readfile": "FAIL", "listdir": "cached", "symlink": "cached", "plain": "cached"})
    # The change undone: the committed content's time again, and runner A's result.
    git(j.path, "checkout", "--", "readfile/testdata/greeting.txt")
    (j.path / "listdir" / "testdata" / "c.txt").unlink()
    j.normalize()
    j.test(dict.fromkeys(PACKAGES, "cached"))


def test_tree_outside_git(
    seeded: Runner, base: Path, origin: Path, checkout: Path, go_env: dict[str, str],
    redis_url: str,
) -> None:
    # A source tarball at the same path: every file is hashed, to the times of a clone.
    # The modes must match too (cmd/go hashes them): git archive's default umask is 002.
    k = Runner(base, checkout, go_env, redis_url)
    shutil.rmtree(checkout, ignore_errors=True)
    checkout.mkdir(parents=True)
    archive = subprocess.run(["git", "-c", "tar.umask=022", "archive", "v1"], cwd=origin,
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True, timeout=60)
    assert not (checkout / ".git").exists()
    line = k.normalize()
    assert "11 files hashed (no git index used)" in line, line
    k.test(dict.fromkeys(PACKAGES, "cached"))

