"""`journal-doctor migrate` to real databases: SQLite, and PostgreSQL and Redis servers started
here in temporary directories (a unix socket; a free loopback port), stopped after."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from journal_doctor.actions import migrate as migrate_module
from journal_doctor.actions import rdb_batch
from journal_doctor.actions.migrate import migrate as migrate_core
from journal_doctor.actions.migrate import same, trial_difference, verify
from journal_doctor.errors import DoctorError

from helpers import (
    PYTHON,
    Workers,
    doctor_json,
    holding_open,
    in_terminal,
    kill_mid_trial,
    poll,
    require,
)

pytestmark = pytest.mark.slow
STUDY = "doctor-demo"


def a_journal(tmp_path: Path, workers: Workers) -> Path:
    """A real study left by a crash: COMPLETE trials, a RUNNING one, a WAITING one, a -0.0
    intermediate value, NaN and a user attr."""
    journal = tmp_path / "j.log"
    kill_mid_trial(journal, workers)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    study = optuna.load_study(study_name=STUDY, storage=storage)
    study.set_user_attr("owner", "alice")
    trial = study.ask()
    trial.suggest_categorical("kind", ["a", "b"])
    trial.report(-0.0, 1)
    trial.report(float("nan"), 2)
    study.tell(trial, 1.5)
    study.enqueue_trial({"x": 0.25}, user_attrs={"why": "retry"})
    # A second study: two objectives (an infinite value), int/log/stepped params, system attrs.
    two = optuna.create_study(
        study_name="two", storage=storage, directions=["minimize", "maximize"]
    )
    storage.set_study_system_attr(two._study_id, "origin", {"host": "a", "n": [1, 2.5]})
    for k in range(3):
        trial = two.ask()
        trial.suggest_int("layers", 1, 8)
        trial.suggest_float("lr", 1e-5, 1.0, log=True)
        trial.suggest_float("drop", 0.0, 0.5, step=0.1)
        trial.set_user_attr("k", k)
        two.tell(trial, [float("inf") if k == 1 else k / 3, -k])
    return journal


def migrate(journal: Path, url: str, *extra: str) -> tuple[int, dict[str, object]]:
    return doctor_json("migrate", "--force", *extra, str(journal), url)


def assert_same_studies(journal: Path, url: str) -> None:
    source = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    if url.startswith("redis"):
        from optuna.storages.journal import JournalRedisBackend

        target = optuna.storages.JournalStorage(JournalRedisBackend(url))
    else:
        target = optuna.storages.RDBStorage(url)
    a = optuna.load_study(study_name=STUDY, storage=source).trials
    b = optuna.load_study(study_name=STUDY, storage=target).trials
    assert [t.state.name for t in a] == [t.state.name for t in b]
    assert {"RUNNING", "WAITING", "COMPLETE"} <= {t.state.name for t in b}
    for x, y in zip(a, b, strict=True):
        assert trial_difference(x, y) is None


def test_migrate_to_sqlite_copies_and_verifies(tmp_path: Path, workers: Workers) -> None:
    journal = a_journal(tmp_path, workers)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    code, dry = doctor_json("migrate", "--dry-run", str(journal), url)
    assert code == 0
    assert not (tmp_path / "study.db").exists()  # a dry run creates nothing
    assert dry["performed"] is False
    code, done = migrate(journal, url)
    assert (code, done["verified"], done["difference"]) == (0, True, None)
    assert done["storage_line"] == f"storage = optuna.storages.RDBStorage({url!r})"
    assert_same_studies(journal, url)
    # Again: the study exists in the target now. Refused, nothing copied twice.
    result = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--force", str(journal),
                             url], capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 1
    assert "already has a study named 'doctor-demo'" in result.stderr


def stored(url: str) -> list[str]:
    """Every study and trial as Optuna's public RDB loader gives them, each field's repr."""
    storage = optuna.storages.RDBStorage(url)
    return [repr((s.study_name, s.directions, s.user_attrs, s.system_attrs,
                  [sorted(vars(t).items()) for t in storage.get_all_trials(s._study_id)]))
            for s in storage.get_all_studies()]  # fmt: skip


def test_the_batched_copy_stores_what_optuna_s_own_copy_stores(
    tmp_path: Path, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """migrate writes a batch of trials per transaction through Optuna's private ORM models;
    the database must hold exactly what optuna.copy_study (and migrate's public per-trial path)
    put there: every field, to the microsecond, -0.0, NaN and infinities included."""
    journal = a_journal(tmp_path, workers)
    monkeypatch.setattr(rdb_batch, "BATCH", 3)  # several batches from a small study
    source = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    baseline = f"sqlite:///{tmp_path / 'copy_study.db'}"
    for study in source.get_all_studies():
        optuna.copy_study(from_study_name=study.study_name, from_storage=source,
                          to_storage=baseline)  # fmt: skip
    batched = f"sqlite:///{tmp_path / 'batched.db'}"
    told: list[tuple[int, int]] = []
    report = migrate_core(str(journal), batched, progress=lambda *n: told.append(n))
    assert report.verified
    assert rdb_batch.supports(optuna.storages.RDBStorage(batched))
    total = sum(sum(c.trials_by_state.values()) for c in report.studies)
    assert told[-1] == (total, total)
    per_trial = f"sqlite:///{tmp_path / 'per_trial.db'}"
    monkeypatch.setattr(rdb_batch, "supports", lambda storage: False)
    assert migrate_core(str(journal), per_trial).verified
    assert len(stored(baseline)) == 2
    assert stored(batched) == stored(baseline) == stored(per_trial)


def test_the_verification_names_what_differs_in_the_database(
    tmp_path: Path, workers: Workers
) -> None:
    """The check after the copy reads the database afresh: a value changed there, or a trial
    gone, is found and named."""
    journal = a_journal(tmp_path, workers)
    path = tmp_path / "study.db"
    url = f"sqlite:///{path}"
    assert migrate_core(str(journal), url).verified
    source = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    names = [s.study_name for s in source.get_all_studies()]
    assert verify(source, url, names) is None
    with sqlite3.connect(path) as db:
        db.execute("UPDATE trial_values SET value = value + 1 WHERE trial_id ="
                   " (SELECT trial_id FROM trials WHERE number = 1 AND study_id = 2)"
                   " AND objective = 1")  # fmt: skip
    assert verify(source, url, names) == "study 'two', trial 1: values: [inf, -1.0] != [inf, 0.0]"
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM trials WHERE study_id = 1 AND number ="
                   " (SELECT MAX(number) FROM trials WHERE study_id = 1)")  # fmt: skip
    n = len(source.get_all_trials(source.get_study_id_from_name(STUDY)))
    assert (
        verify(source, url, names) == f"study {STUDY!r}: {n} trials in the journal, {n - 1} copied"
    )


def test_migrate_refuses_a_damaged_or_busy_journal_and_creates_nothing(
    tmp_path: Path, workers: Workers
) -> None:
    journal = a_journal(tmp_path, workers)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with holding_open(journal, "ab"):
        result = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--force",
                                 str(journal), url], capture_output=True, text=True,
                                check=False)  # fmt: skip
    assert result.returncode == 1
    assert "has it open" in result.stderr
    with open(journal, "ab") as f:
        f.write(b'{"op_code":6,"wor')
    result = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--force", str(journal),
                             url], capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 1
    assert "journal-doctor repair" in result.stderr
    assert not (tmp_path / "study.db").exists()


def test_a_missing_driver_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    subprocess.run([PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "2"],
                   check=True, capture_output=True)  # fmt: skip
    # The test extra installs pymysql; None in sys.modules makes `import pymysql` raise the
    # ImportError a machine without it raises.
    without_pymysql = (
        "import sys; sys.modules['pymysql'] = None; from journal_doctor.cli import main; main()"
    )
    result = subprocess.run([PYTHON, "-c", without_pymysql, "migrate", "--force", str(journal),
                             "mysql+pymysql://u@127.0.0.1/db"], capture_output=True, text=True,
                            check=False)  # fmt: skip
    (line,) = result.stderr.strip().splitlines()
    assert "pip install 'journal-doctor[mysql]'" in line
    assert result.returncode == 1


def test_a_dry_run_fails_where_the_copy_would(tmp_path: Path) -> None:
    """The dry run reaches the target as the copy does: a path that is a directory, or one in
    a directory that does not exist, is refused by both, and the dry run creates nothing."""
    journal = tmp_path / "j.log"
    subprocess.run([PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "2"],
                   check=True, capture_output=True)  # fmt: skip
    (tmp_path / "a-directory").mkdir()
    refused = {
        f"sqlite:///{tmp_path}/a-directory": "a directory, not a database file",
        f"sqlite:///{tmp_path}/missing/study.db": "is not a writable directory",
    }
    for url, why in refused.items():
        for mode in ("--dry-run", "--force"):
            result = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", mode,
                                     str(journal), url], capture_output=True, text=True,
                                    check=False)  # fmt: skip
            assert result.returncode == 1, (mode, url, result.stdout)
            (line,) = result.stderr.strip().splitlines()
            assert why in line
            assert "Would copy" not in result.stdout
    fine = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--dry-run", str(journal),
                           f"sqlite:///{tmp_path}/new.db"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert fine.returncode == 0, fine.stderr
    assert "Would copy study" in fine.stdout
    assert not (tmp_path / "new.db").exists()


def test_numbers_compare_as_numbers() -> None:
    assert same(-0.0, 0.0)
    assert same(float("nan"), float("nan"))
    assert same({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not same(1.0, 1.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or os.geteuid() != 0 or shutil.which("runuser") is None:
        require("postgres", "PostgreSQL (apt-get install postgresql) and root are needed")
    if importlib.util.find_spec("psycopg") is None:
        require("postgres", "the psycopg driver is missing: pip install -e '.[postgres]'")
    bin_dir = bins[-1]
    # Not below pytest's own tmp directory: only root may enter that, and the server runs as
    # the postgres user (it refuses to run as root).
    base = Path(tempfile.mkdtemp(prefix="jd-pg-"))
    base.chmod(0o755)
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    shutil.chown(base, "postgres")
    shutil.chown(sockets, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U",
                    "postgres"], check=True, capture_output=True)  # fmt: skip
    subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-w", "-l",
                    str(base / "log"), "-o", f"-k {sockets} -c listen_addresses=''", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sockets}"
    finally:
        subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "fast",
                        "stop"], check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[str]:
    """A MariaDB server on a unix socket in a temporary directory, root by socket auth."""
    server, install = (
        shutil.which("mariadbd", path="/usr/sbin:/usr/bin"),
        shutil.which("mariadb-install-db"),
    )
    if server is None or install is None or os.geteuid() != 0:
        require("mysql", "MariaDB (apt-get install mariadb-server) and root are needed")
    if importlib.util.find_spec("pymysql") is None:
        require("mysql", "the PyMySQL driver is missing: pip install -e '.[mysql]'")
    base = Path(tempfile.mkdtemp(prefix="jd-maria-"))
    shutil.chown(base, "mysql")
    data, sock = base / "data", base / "sock"
    subprocess.run([install or "", f"--datadir={data}", "--user=mysql",
                    "--auth-root-authentication-method=socket", "--skip-test-db"],
                   check=True, capture_output=True)  # fmt: skip
    proc = subprocess.Popen([server or "", f"--datadir={data}", f"--socket={sock}", "--user=mysql",
                             "--skip-networking", f"--pid-file={base / 'pid'}",
                             f"--log-error={base / 'log'}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert poll(sock.exists, 30), (base / "log").read_text(errors="replace")
        subprocess.run(["mariadb", f"--socket={sock}", "-e", "CREATE DATABASE optuna"],
                       check=True, capture_output=True)  # fmt: skip
        yield f"mysql+pymysql://root@localhost/optuna?unix_socket={sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        require("redis", "redis-server is not installed (apt-get install redis-server)")
    if importlib.util.find_spec("redis") is None:
        require("redis", "the redis driver is missing: pip install -e '.[redis]'")
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([server or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                             str(directory)], stdout=subprocess.DEVNULL)  # fmt: skip

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        assert poll(up, 20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_migrate_to_a_real_postgresql_server(
    tmp_path: Path, workers: Workers, postgres: str
) -> None:
    journal = a_journal(tmp_path, workers)
    code, done = migrate(journal, postgres)
    assert (code, done["verified"]) == (0, True), done
    assert_same_studies(journal, postgres)


def test_migrate_to_a_real_mariadb_server(tmp_path: Path, workers: Workers, mariadb: str) -> None:
    """MySQL's dialect, which keeps times to the whole second: the batched copy still holds
    what the journal holds."""
    journal = a_journal(tmp_path, workers)
    code, done = migrate(journal, mariadb)
    assert (code, done["verified"]) == (0, True), done
    assert_same_studies(journal, mariadb)


def test_migrate_to_a_real_redis_server(tmp_path: Path, workers: Workers, redis_url: str) -> None:
    journal = a_journal(tmp_path, workers)
    code, done = migrate(journal, redis_url, "--study", STUDY)
    assert (code, done["verified"]) == (0, True), done
    assert "JournalRedisBackend" in str(done["storage_line"])
    assert_same_studies(journal, redis_url)


def a_long_journal(path: Path, trials: int, long_name_at: int | None = None) -> Path:
    """One study of `trials` COMPLETE trials; the one numbered `long_name_at` has a parameter
    name longer than Optuna's 512-character column (a journal takes any)."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="long", storage=storage)
    x = optuna.distributions.FloatDistribution(0, 1)
    for k in range(trials):
        name = "x" * 600 if k == long_name_at else "x"
        study.add_trial(optuna.trial.create_trial(params={name: 0.5}, distributions={name: x},
                                                  value=k))  # fmt: skip
    return path


def test_migrate_in_a_terminal_asks_then_shows_its_progress(tmp_path: Path) -> None:
    journal = a_long_journal(tmp_path / "long.log", 3 * rdb_batch.BATCH)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    screen = in_terminal("migrate", str(journal), url, keys=b"y\r")
    assert screen.returncode == 0, screen.output
    assert "Would copy study 'long'" in screen.output  # the plan, before the question
    assert "copying trials" in screen.output
    assert "Verified: both sides load and every trial matches" in screen.output
    assert len(optuna.load_study(study_name="long", storage=url).trials) == 3 * rdb_batch.BATCH


def test_a_dry_run_with_bad_credentials_fails_as_the_copy_would(
    tmp_path: Path, postgres: str
) -> None:
    journal = tmp_path / "j.log"
    subprocess.run([PYTHON, "-m", "journal_doctor.demo.worker", str(journal), "--trials", "2"],
                   check=True, capture_output=True)  # fmt: skip
    wrong = postgres.replace("postgres@", "no_such_user@", 1)
    result = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--dry-run",
                             str(journal), wrong], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert "cannot use it" in line
    assert "no_such_user" in line


def test_a_copy_cut_short_says_what_the_target_keeps(tmp_path: Path, postgres: str) -> None:
    """PostgreSQL refuses a parameter name longer than Optuna's 512-character column (a journal
    takes any): the copy stops in its second batch. The error names the study, how far it got
    and the command that deletes the part copied; that command works."""
    journal = a_long_journal(tmp_path / "long.log", rdb_batch.BATCH + 20, rdb_batch.BATCH + 10)
    result = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--force", str(journal),
                             postgres], capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"stopped in study 'long' after {rdb_batch.BATCH} of {rdb_batch.BATCH + 20}" in line
    target = optuna.storages.RDBStorage(postgres)
    kept = optuna.load_study(study_name="long", storage=target)
    assert len(kept.trials) == rdb_batch.BATCH
    command = line.split("delete it (", 1)[1].split("), then", 1)[0]
    optuna_cli = Path(PYTHON).parent / "optuna"  # the script installed beside this Python
    subprocess.run(command.replace("optuna ", f"{optuna_cli} ", 1), shell=True, check=True,
                   capture_output=True)  # fmt: skip
    assert "long" not in {s.study_name for s in target.get_all_studies()}


def test_a_cut_short_copy_never_names_another_writer_s_study_for_deletion(
    tmp_path: Path, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target is shared: a study named like one of the journal's may appear there after
    the clash check (simulated by passing that check). The copy stops at it, and the line
    names for deletion only the study migrate itself created; the other one is untouched."""
    journal = a_journal(tmp_path, workers)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    theirs = optuna.create_study(study_name="two", storage=url)
    theirs.enqueue_trial({"x": 1})
    monkeypatch.setattr(migrate_module, "_target_names", lambda url, dry_run: set())
    with pytest.raises(DoctorError) as stopped:
        migrate_core(str(journal), url)
    message = str(stopped.value)
    assert "the copy stopped in study 'two'" in message
    assert "--study-name 'doctor-demo'" in message
    assert "--study-name 'two'" not in message
    assert len(optuna.load_study(study_name="two", storage=url).trials) == 1


def a_fresh_database(url: str, name: str) -> str:
    """The URL of a new, empty database on the server at `url` (a `postgres` fixture URL)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    return url.replace("@/postgres?", f"@/{name}?", 1)


def shown_in_migrate_md(command: str) -> str:
    """The output under `$ command` in docs/migrate.md's console blocks (indented or not)."""
    text = (Path(__file__).parent.parent / "docs" / "migrate.md").read_text()
    after = text.split(f"$ {command}\n", 1)[1]
    lines = []
    for line in after.splitlines():
        if line.strip().startswith("```"):
            break
        lines.append(line.strip())
    return "\n".join(lines)


def test_the_migrate_examples_are_what_migrate_prints(tmp_path: Path, postgres: str) -> None:
    """docs/migrate.md's two runs, made again against a real PostgreSQL server: a study with 20
    COMPLETE and 2 RUNNING trials, and a copy cut short by a parameter name too long for the
    database. The URL and the seconds are normalised."""
    shown_url = "postgresql+psycopg://optuna@db/optuna"
    postgres = a_fresh_database(postgres, "examples")  # the module's server has other studies
    runs = tmp_path / "runs"
    runs.mkdir()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(runs / "study.log"))
    )
    study = optuna.create_study(study_name=STUDY, storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", -10, 10) ** 2, n_trials=20)
    study.ask(), study.ask()
    a_long_journal(runs / "long.log", rdb_batch.BATCH + 20, rdb_batch.BATCH + 10)
    for journal in ("runs/study.log", "runs/long.log"):
        done = subprocess.run([PYTHON, "-m", "journal_doctor", "migrate", "--force", journal,
                               postgres], cwd=tmp_path, capture_output=True, text=True,
                              check=False)  # fmt: skip
        printed = (done.stderr + done.stdout).replace(postgres, shown_url).strip()
        shown = shown_in_migrate_md(f"journal-doctor migrate --force {journal} {shown_url}")
        seconds = r"\(\d+\.\d s\)"
        assert re.sub(seconds, "(s)", printed) == re.sub(seconds, "(s)", shown), printed
