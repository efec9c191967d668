"""Fuzzing with hypothesis: random bytes and mutations of a real journal.

check never raises; repair either leaves a journal Optuna loads or refuses with a reason (and
then leaves the journal byte-identical).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

from journal_doctor.actions.repair import RepairRefused, repair
from journal_doctor.errors import NotAJournal
from journal_doctor.journal.check import check_journal
from journal_doctor.journal.lines import LineReader
from journal_doctor.journal.ops import classify, is_journal_head

optuna.logging.set_verbosity(optuna.logging.WARNING)
FUZZ = settings(
    max_examples=int(os.environ.get("JD_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def seed_journal() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "seed.log")
        subprocess.run(
            [sys.executable, "-m", "journal_doctor.demo.worker", journal, "--trials", "6"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return Path(journal).read_bytes()


def optuna_loads(path: str) -> None:
    storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    for study in storage.get_all_studies():
        storage.get_all_trials(study._study_id, deepcopy=False)


# An op newer than the doctor knows: never damage, kept by repair; no Optuna here loads it.
NEWER_OP = b'{"op_code":11,"worker_id":"w-1"}\n'
mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(b"")),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("nul"), st.integers(0, 10**6), st.integers(1, 600).map(b"\x00".__mul__)),
    st.tuples(st.just("newline"), st.integers(0, 10**6), st.just(b"\n")),
    st.tuples(st.just("json"), st.integers(0, 10**6), st.sampled_from([
        b'[1]\n', b'{"op_code":-1,"worker_id":"w"}\n', b'{"a":1}\n', b"NaN\n", b'"x"\n',
        b'{"op_code":5,"worker_id":"w","trial_id":0,"param_name":"x","param_value_internal":1,'
        b'"distribution":"{}"}\n', NEWER_OP,
    ])),
)  # fmt: skip


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    for kind, position, payload in mutations:
        at = position % (len(data) + 1)
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            data = data[:at] + payload + data[at + len(payload) :]
        else:
            data = data[:at] + payload + data[at:]
    return data


@FUZZ
@given(st.binary(max_size=3000))
def test_check_judges_or_refuses_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.log"
    path.write_bytes(data)
    if data and not is_journal_head(data[:4096]):
        with pytest.raises(NotAJournal):
            check_journal(str(path))
        return
    health = check_journal(str(path))
    assert health.size == len(data)
    assert health.healthy == (health.damage_count == 0)


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_repair_yields_a_loadable_journal_or_refuses(
    tmp_path: Path, seed_journal: bytes, mutations: list[tuple[str, int, bytes]]
) -> None:
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    journal = directory / "j.log"
    damaged = mutate(seed_journal, mutations)
    journal.write_bytes(damaged)
    if damaged and not is_journal_head(damaged[:4096]):
        with pytest.raises(NotAJournal):  # the first line no longer begins with an op
            repair(str(journal), force=True)
        assert journal.read_bytes() == damaged
        assert sorted(os.listdir(directory)) == ["j.log"]  # no backup, no quarantine
        return
    health = check_journal(str(journal))
    try:
        report = repair(str(journal), force=True)
    except RepairRefused as refused:
        reason = str(refused)
        event("refused")
        assert reason  # a reason
        assert journal.read_bytes() == damaged
        return
    event("repaired" if report.performed else "healthy")
    if report.performed:
        after = check_journal(str(journal))
        assert after.healthy
        # Every newer op that was a whole line before is kept.
        assert journal.read_bytes().count(NEWER_OP) >= damaged.count(b"\n" + NEWER_OP)
        if not after.newer_ops:
            optuna_loads(str(journal))  # raises if Optuna cannot load it
    else:
        assert health.healthy
    assert not os.path.lexists(f"{journal}.lock")


@FUZZ
@given(
    st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.booleans(),
    st.integers(1, 64),
)
def test_line_reader_splits_exactly_like_bytes_split(
    tmp_path: Path, lines: list[bytes], trailing: bool, chunk: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing else b"")
    path = tmp_path / "lines.log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = LineReader(fd, chunk=chunk, max_line=1 << 20)
        got = [line for batch in reader for line in batch]
    finally:
        os.close(fd)
    expected = data.split(b"\n")
    tail = expected.pop()
    assert got == expected
    assert reader.tail == tail


@FUZZ
@given(st.binary(max_size=200))
def test_classify_agrees_with_json_loads_on_validity(line: bytes) -> None:
    verdict = classify(line + b"\n")
    try:
        value = json.loads(line + b"\n")
    except (ValueError, RecursionError):
        assert verdict.problem is not None
    else:
        if verdict.problem is None:
            assert verdict.op == value
