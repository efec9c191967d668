"""Output contracts: hostile file names, JSON validity, help, version, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import age_path, invoke

HOSTILE = {
    "markup": "[bold red]study",
    "ansi": "evil\x1b[31mred\x1b[0m",
    "newline": "two\nlines",
}


def make_stale_lock(directory: Path, journal_name: str | bytes) -> Path:
    """A stale symlink lock beside a (tiny) journal, whatever bytes its name holds."""
    base = os.fsencode(directory)
    name = os.fsencode(journal_name)
    journal = os.path.join(base, name)
    with open(journal, "wb") as f:
        f.write(b'{"op_code":0}\n')
    lock = journal + b".lock"
    os.symlink(name, lock)
    age_path(Path(os.fsdecode(lock)), 60)
    return Path(os.fsdecode(lock))


@pytest.mark.parametrize("name", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_names_print_literally_and_never_reach_the_terminal(
    tmp_path: Path, name: str
) -> None:
    make_stale_lock(tmp_path, name)
    result = invoke("scan", str(tmp_path))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout
    if name.startswith("[bold"):
        assert "[bold red]study.lock" in result.stdout
    if "\n" in name:
        assert "two\\nlines.lock" in result.stdout
    if "\x1b" in name:
        assert "evil\\x1b[31mred" in result.stdout


def test_invalid_utf8_name_prints_and_makes_valid_json(tmp_path: Path) -> None:
    make_stale_lock(tmp_path, b"caf\xe9.log")
    human = invoke("scan", str(tmp_path))
    assert "caf\\xe9.log.lock" in human.stdout
    result = invoke("scan", "--json", str(tmp_path))
    document = json.loads(result.stdout.encode("utf-8"))
    (lock,) = document["locks"]
    assert lock["path"].endswith("caf\\xe9.log.lock")
    assert lock["verdict"] == "orphaned"
    assert result.stderr == ""


def test_json_mode_prints_nothing_but_json(tmp_path: Path) -> None:
    make_stale_lock(tmp_path, "j.log")
    result = invoke("scan", "--json", "-v", str(tmp_path))
    json.loads(result.stdout)  # the whole of stdout is one document


def test_help_answers_questions() -> None:
    top = invoke("--help")
    assert top.returncode == 0
    assert "journal-doctor clean --force --wait 60" in top.stdout
    for command in ("scan", "clean"):
        page = invoke(command, "--help").stdout
        assert "--min-age" in page
        assert "--json" in page
        assert "Exit codes" in page
    assert "--wait" in invoke("clean", "--help").stdout


def test_version() -> None:
    from journal_doctor import __version__

    result = invoke("--version")
    assert result.stdout.strip() == f"journal-doctor {__version__}"


def test_bad_option_is_usage_error() -> None:
    assert invoke("scan", "--min-age", "soon").returncode == 2
    assert invoke("scan", "--no-such-flag").returncode == 2


def test_other_lock_tools_files_are_not_optuna_locks(tmp_path: Path) -> None:
    (tmp_path / "poetry.lock").write_text("[[package]]\n")
    git = tmp_path / ".git"
    git.mkdir()
    (git / "index").write_bytes(b"DIRC\x00\x00\x00\x02")
    (git / "index.lock").touch()
    age_path(git / "index.lock", 60)
    result = invoke("scan", "--json", str(tmp_path))
    assert json.loads(result.stdout)["locks"] == []
    assert result.returncode == 0


def test_something_else_at_a_journal_lock_name_is_kind_other(tmp_path: Path) -> None:
    (tmp_path / "j.log").write_text('{"op_code":0}\n')
    (tmp_path / "j.log.lock").mkdir()
    os.mkfifo(tmp_path / "k.log.lock")
    (tmp_path / "k.log").write_text("")
    result = invoke("clean", "--force", "--json", "--min-age", "0", str(tmp_path))
    document = json.loads(result.stdout)
    assert {lock["kind"] for lock in document["locks"]} == {"other"}
    assert {lock["verdict"] for lock in document["locks"]} == {"unknown"}
    assert document["removed"] == []
    assert (tmp_path / "j.log.lock").is_dir()
    assert result.returncode == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unreadable_directory_is_reported_and_scan_goes_on(tmp_path: Path) -> None:
    # As root every directory is readable, so the scan runs as `nobody` over a world-readable
    # tree with one closed directory.
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user `nobody` on this machine")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    root = Path(tempfile.mkdtemp(prefix="jd-perm-"))
    try:
        root.chmod(0o755)
        (root / "closed").mkdir(mode=0o700)
        (root / "open").mkdir(mode=0o755)
        make_stale_lock(root / "open", "j.log")
        result = subprocess.run(
            [
                setpriv,
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
                sys.executable,
                "-m",
                "journal_doctor",
                "scan",
                "--json",
                str(root),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        )
        if result.returncode not in (0, 1) or not result.stdout:
            pytest.skip(f"cannot run python as nobody here: {result.stderr.strip()[-200:]}")
        document = json.loads(result.stdout)
        assert [p["path"] for p in document["problems"]] == [str(root / "closed")]
        assert "Permission denied" in document["problems"][0]["message"]
        (lock,) = document["locks"]
        # The lock is root's, and nobody cannot see root's open files: fail closed.
        assert lock["verdict"] == "unknown"
        assert "root" in lock["reason"]
        assert result.returncode == 1
    finally:
        shutil.rmtree(root)


def test_api_names_stay_functions_after_the_cli_loaded_everything() -> None:
    import journal_doctor
    import journal_doctor.cli  # imports the modules behind the lazy names

    assert callable(journal_doctor.scan)
    assert callable(journal_doctor.clean)
    assert journal_doctor.Verdict.ORPHANED.value == "orphaned"
