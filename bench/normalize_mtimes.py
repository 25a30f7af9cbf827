#!/usr/bin/env python3
"""How long does ``redis-gocache normalize-mtimes`` take on a large checkout? Measure it.

Makes a git repository of ``--files`` files (default 20,000: 20 top directories of 20
subdirectories of 50 files, sizes spread from 100 bytes to 64 KiB, median about 2 KiB, plus a
few symlinks), then, in each repetition, on fresh ``git clone``s:

* ``clone``: the ``git clone --no-hardlinks`` itself (for proportion: the step it follows);
* ``git``: the command on the fresh clone, as a CI step runs it (git's index for the blob
  ids; this includes the ``git update-index --refresh`` afterwards, also shown alone);
* ``again``: the command a second time on the same clone (nothing to set);
* ``no-git``: ``--no-git`` on another fresh clone (every file read and hashed);
* ``status``: ``git status`` after the command (what cmd/go's VCS stamping pays next).

Each figure is the wall time of the console script (``python`` start-up and click included),
median over ``--reps``; the refresh is read from ``-v``-less runs of :func:`normalize` in
process. The machine is shared and noisy: compare the ratios printed beside the medians.

    python bench/normalize_mtimes.py [--files 20000] [--reps 5] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis_gocache.mtimes import normalize  # noqa: E402

GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def command() -> list[str]:
    script = Path(sys.executable).with_name("redis-gocache")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "redis_gocache"]


def make_repo(root: Path, files: int, seed: int = 17) -> int:
    """A committed repository of ``files`` files; returns its size in bytes."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    total = 0
    for i in range(files):
        top, sub, n = i // 1000, (i // 50) % 20, i % 50
        path = root / f"pkg{top:02d}" / f"sub{sub:02d}" / f"file{n:02d}.go"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = min(64 * 1024, max(100, int(rng.lognormvariate(7.6, 1.0))))
        path.write_bytes(rng.randbytes(size // 2).hex().encode()[:size])
        total += size
    for i in range(10):
        (root / f"pkg{i:02d}" / "link").symlink_to("sub00/file00.go")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return total


def timed(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work-dir", default=None, help="where the repositories go [TMPDIR]")
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mtimes-", dir=opts.work_dir))
    try:
        origin = work / "origin"
        size = make_repo(origin, opts.files)
        version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
        print(f"{opts.files} files, {size / 2**20:.0f} MiB, in {work}; {version.strip()}")
        cmd = [*command(), "normalize-mtimes"]
        rows: dict[str, list[float]] = {k: [] for k in
                                        ("clone", "git", "again", "no-git", "status", "refresh")}
        for rep in range(opts.reps):
            a, b, c = work / f"a{rep}", work / f"b{rep}", work / f"c{rep}"
            rows["clone"].append(timed(["git", "clone", "-q", "--no-hardlinks", str(origin),
                                        str(a)], work))
            rows["git"].append(timed(cmd, a))
            rows["again"].append(timed(cmd, a))
            rows["status"].append(timed(["git", "status", "--porcelain"], a))
            timed(["git", "clone", "-q", "--no-hardlinks", str(origin), str(b)], work)
            rows["no-git"].append(timed([*cmd, "--no-git"], b))
            # The refresh alone, from a run in process on a third clone.
            timed(["git", "clone", "-q", "--no-hardlinks", str(origin), str(c)], work)
            result = normalize(str(c))
            assert not result.errors and result.hashed == 0, result.summary()
            rows["refresh"].append(result.refresh_seconds)
            for d in (a, b, c):
                shutil.rmtree(d)
        base = statistics.median(rows["clone"])
        print(f"medians of {opts.reps} (ratio to the clone itself):")
        for name, values in rows.items():
            med = statistics.median(values)
            print(f"  {name:<8} {med:7.3f} s  {med / base:5.2f}x   "
                  f"[{min(values):.3f} .. {max(values):.3f}]")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
