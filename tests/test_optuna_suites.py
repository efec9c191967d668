"""Optuna's own storage test suites pass against journal_doctor.storage(), for every supported
Optuna: this venv's (the newest) and each JD_COMPAT_PYTHONS venv's (the CI compatibility job).

Each version's `tests/storages_tests/test_storages.py` and `test_heartbeat.py` come from its own
source distribution (`pip download --no-binary :all:`); 3.6 and 4.0 ship no tests/, so they run
the oldest shipped suite, 4.1.0's. `optuna_suites/plugin.py` makes the suites' storage modes one,
`journal_doctor`, and lists what it excludes and why. All versions run at once (the heartbeat
tests mostly sleep), each in its own pytest process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import require

PLUGIN = Path(__file__).parent / "optuna_suites"
SUITE = ("tests/storages_tests/test_storages.py", "tests/storages_tests/test_heartbeat.py")
OLDEST_SHIPPED = "4.1.0"
SDISTS = Path(os.environ.get("JD_OPTUNA_SDISTS", Path.home() / ".cache" / "journal-doctor-sdists"))
PYTHONS = [sys.executable] + [p for p in os.environ.get("JD_COMPAT_PYTHONS", "").split(":") if p]

pytestmark = pytest.mark.slow


def optuna_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import optuna; print(optuna.__version__)"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip()


def suite_version(version: str) -> str:
    major, minor = (int(part) for part in version.split(".")[:2])
    return OLDEST_SHIPPED if (major, minor) < (4, 1) else version


def fetch_suite(version: str, into: Path) -> None:
    """The two suite files of `version`'s sdist, into `into`."""
    archive = SDISTS / f"optuna-{version}.tar.gz"
    if not archive.exists():
        SDISTS.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", str(SDISTS), f"optuna=={version}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if got.returncode != 0 or not archive.exists():
            require("optuna-suites", f"could not download Optuna {version}'s sdist: {got.stderr}")
    with tarfile.open(archive) as tar:
        for name in SUITE:
            member = tar.extractfile(f"optuna-{version}/{name}")
            assert member is not None, f"{name} is missing from {archive}"
            (into / Path(name).name).write_bytes(member.read())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every version's suite, started at once."""
    started: dict[str, subprocess.Popen[str]] = {}
    for python in PYTHONS:
        version = optuna_version(python)
        where = tmp_path_factory.mktemp(f"optuna-{version}")
        fetch_suite(suite_version(version), where)
        # Optuna's suites make their journals with tempfile: each leaves the guarded storage's
        # record file and heartbeats folder beside it (a storage cannot know its journal was
        # deleted), so they go where pytest removes old runs, not into /tmp.
        (where / "tmp").mkdir()
        env = {**os.environ, "PYTHONPATH": str(PLUGIN), "TMPDIR": str(where / "tmp")}
        started[python] = subprocess.Popen(
            [python, "-m", "pytest", "-q", "-p", "plugin", "-p", "no:cacheprovider",
             "-W", "ignore", *(Path(name).name for name in SUITE)],
            cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    yield started
    for proc in started.values():
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: Path(p).parents[1].name)
def test_optuna_s_own_storage_suites_pass(
    runs: dict[str, subprocess.Popen[str]], python: str
) -> None:
    if python != sys.executable and not Path(python).exists():
        require("compat", f"{python} does not exist")
    output, _ = runs[python].communicate(timeout=900)
    summary = output.strip().splitlines()[-1]
    print(f"Optuna {optuna_version(python)}: {summary}")
    assert runs[python].returncode == 0, output[-6000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed, summary
    assert int(passed.group(1)) >= 60, summary  # the suites really ran
    assert "failed" not in summary, summary
    assert "error" not in summary, summary
