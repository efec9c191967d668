"""The console examples in the docs are real runs: each is made again here from the same crash
state and compared word for word, with ages, pids and process names normalised. A pid's width
moves a word between a cell's lines, so the words are compared as a multiset, and the rows in
order."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import PYTHON, as_nobody, in_terminal, poll

pytestmark = pytest.mark.slow
DOCS = Path(__file__).parent.parent / "docs"
STUDIES = ("study-a", "study-b", "study-c", "study-d")
OP = b'{"op_code":0,"worker_id":"w-1","study_name":"s","directions":[0]}\n'


def example(page: str, command: str) -> str:
    """The output shown under `$ command` in a docs page, up to the next prompt or fence."""
    text = (DOCS / page).read_text()
    after = text.split(f"$ {command}\n", 1)[1]
    return re.split(r"\n(?:\$ |```)", after, maxsplit=1)[0]


def words(output: str) -> list[str]:
    output = re.sub(r"\b\d+(?:\.\d+)?s\b", "<age>", output)
    output = re.sub(r"\b\d{2,7}\b", "<pid>", output)
    output = re.sub(r"\bpython3?\b", "<python>", output)
    return output.split()


def studies(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if line.startswith("study-")]


@pytest.fixture
def crash_states(tmp_path: Path) -> Iterator[Path]:
    """The four studies of the scan example: two SIGKILLed holders' locks (symlink and file),
    a dangling symlink lock (the journal given as runs/journal.log), and a holder frozen with
    SIGSTOP in the middle of a write."""
    runs = tmp_path / "runs"
    for name in STUDIES:
        (runs / name).mkdir(parents=True)
        (runs / name / "journal.log").write_bytes(OP)
    os.symlink("journal.log", runs / "study-a" / "journal.log.lock")
    (runs / "study-b" / "journal.log.lock").touch()
    os.symlink("runs/journal.log", runs / "study-c" / "journal.log.lock")
    os.symlink("journal.log", runs / "study-d" / "journal.log.lock")
    then = time.time() - 7.2
    for lock in (runs / name / "journal.log.lock" for name in STUDIES):  # glob skips a dangling one
        os.utime(lock, (then, then), follow_symlinks=False)
    holder = "import os, sys; f = open(sys.argv[1], 'ab'); os.kill(os.getpid(), 19)"
    frozen = subprocess.Popen([PYTHON, "-c", holder, str(runs / "study-d" / "journal.log")])
    assert poll(lambda: _state(frozen.pid) == "T", 10)
    try:
        yield tmp_path
    finally:
        frozen.kill()
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_the_scan_example_is_what_scan_prints(
    crash_states: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(crash_states)
    screen = in_terminal("scan", "runs", columns=80)
    shown = example("commands.md", "journal-doctor scan runs")
    assert sorted(words(screen.output)) == sorted(words(shown)), screen.output
    assert studies(screen.output) == studies(shown)  # the same rows, in the same order
    piped = subprocess.run([PYTHON, "-m", "journal_doctor", "scan", "runs"], capture_output=True,
                           text=True, check=False).stdout  # fmt: skip
    (first, *_) = [line for line in piped.splitlines() if "verdict=orphaned" in line]
    shown = example("commands.md", "journal-doctor scan runs | grep verdict=orphaned")
    assert words(re.sub(r"fs=\S+", "fs=ext4", first)) == words(shown.splitlines()[0]), first


def test_the_unreadable_directory_example_is_what_clean_prints(tmp_path: Path) -> None:
    """Run as `nobody` (root reads every directory) over a tree with one closed directory."""
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="jd-shared-"))  # nobody cannot enter pytest's tmp
    try:
        shared.chmod(0o755)
        (shared / "runs" / "locked").mkdir(parents=True)
        (shared / "runs").chmod(0o755)
        (shared / "runs" / "locked").chmod(0o700)
        done = as_nobody("clean", "--force", str(shared / "runs"))
        printed = (done.stdout + done.stderr).replace(str(shared), "/shared")
        shown = example("commands.md", "journal-doctor clean --force /shared/runs      # as a user"
                        " who cannot read one directory")  # fmt: skip
        assert printed.strip() == shown.strip(), printed
    finally:
        shutil.rmtree(shared)


def run(*args: str, cwd: Path) -> str:
    """What a terminal shows of a run whose stdin and stdout are not terminals: stderr (the
    refusal comes first), then stdout."""
    done = subprocess.run([PYTHON, "-m", "journal_doctor", *args], cwd=cwd, text=True,
                          stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip
    return done.stderr + done.stdout + f"$ echo $?\n{done.returncode}\n"


def test_the_clean_examples_are_what_clean_prints(crash_states: Path) -> None:
    refused = run("clean", "runs", cwd=crash_states)
    shown = example("commands.md", "journal-doctor clean runs < /dev/null")
    assert sorted(words(refused)) == sorted(words(shown + "\n$ echo $?\n1\n")), refused
    planned = run("clean", "--dry-run", "runs", cwd=crash_states)
    shown = example("commands.md", "journal-doctor clean --dry-run runs")
    assert sorted(words(planned)) == sorted(words(shown + "\n$ echo $?\n1\n")), planned
    forced = run("clean", "--force", "runs", cwd=crash_states)
    # The example was cut at 100 columns with pid 29463: the same pid width cuts the same.
    forced = re.sub(r"\b(Process|process|-CONT|kill) \d+", r"\1 29463", forced)
    cut = "\n".join(line[:100] for line in forced.splitlines()) + "\n"
    shown = example("commands.md", "journal-doctor clean --force runs | cut -c1-100")
    shown += "\n$ echo $?\n" + example("commands.md", "echo $?")
    assert sorted(words(cut)) == sorted(words(shown)), cut


def torn_study(directory: Path) -> Path:
    """The journal of the integrity example: 10 COMPLETE trials and one RUNNING (its worker
    killed), then a write cut 60 bytes in, with the next worker's CREATE_STUDY glued on."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = directory / "study.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="doctor-demo", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", -10, 10) ** 2, n_trials=10)
    study.ask().suggest_float("x", -10, 10)
    last = journal.read_bytes().splitlines(keepends=True)[-1]
    glued = b'{"op_code":0,"worker_id":"9b2f0c1e-1","study_name":"doctor-demo","directions":[0]}'
    with journal.open("ab") as f:
        f.write(last[:60] + glued + b"\n")
    return journal


def journal_words(output: str) -> list[str]:
    """Numbers, times, backups' stamps and worker ids normalised; sorted (a table's wrapping
    moves words between lines)."""
    output = re.sub(r"\d{8}T\d{6}Z", "<stamp>", output)
    output = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "<time>", output)
    output = re.sub(r"[0-9a-f]{8}…-\d+", "<worker>", output)
    output = re.sub(r"-?\d+(?:[.,]\d+)*(?:e-?\d+)?", "<n>", output)
    return sorted(output.split())


def test_the_journal_integrity_examples_are_what_the_commands_print(tmp_path: Path) -> None:
    journal = torn_study(tmp_path)
    shown = (DOCS / "journal-integrity.md").read_text().split("```console\n", 1)[1]
    shown = shown.split("\n```", 1)[0]
    printed = ""
    for args in (("check",), ("repair", "--force"), ("trials",), ("trials", "--retry", "--force")):
        screen = in_terminal(*args, "study.log", columns=80, cwd=tmp_path)
        printed += f"$ journal-doctor {' '.join(args)} study.log\n{screen.output}"
    assert journal_words(printed) == journal_words(shown), printed
    assert journal.exists()
