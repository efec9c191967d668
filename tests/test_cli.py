"""What people see: 80-column tables in a terminal, plain lines in pipes and logs, the prompt,
--wait's progress, -q/-v, completion, one line per error and exit codes. Terminals are real
pseudo-terminals; the fast paths call `cli.main` in-process."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import PYTHON, age_path, in_terminal, invoke, run_doctor

OP = b'{"op_code":0,"worker_id":"w-1","study_name":"s","directions":[0]}\n'


def tree(root: Path) -> Path:
    """Five artifacts, one with a long path, as a new user's runs/ might hold."""
    deep = "very/deeply/nested/experiment-directory/with-a-long-name"
    for name, age in (("study-a", 60), ("study-b", 60), ("study-c", 1), (deep, 60)):
        directory = root / name
        directory.mkdir(parents=True)
        (directory / "journal.log").write_bytes(OP)
        os.symlink("journal.log", directory / "journal.log.lock")
        age_path(directory / "journal.log.lock", age)
    # A leftover's age is its last rename (ctime), which no test can set back: it stays
    # recent here, as one a release in progress has just made.
    (root / "study-a" / "journal.log.lock5bc908ce-da7b-4a56-abf1-219e8a7c9a95.rename").touch()
    return root


def test_terminal_tables_read_well_at_80_columns(tmp_path: Path) -> None:
    root = tree(tmp_path)
    screen = in_terminal("scan", str(root), columns=80)
    lines = screen.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for header in ("lock", "kind", "age", "holder", "verdict"):
        assert header in lines[0]
    # Paths break only after a "/", never inside a name.
    text = screen.output
    for name in ("very/", "deeply/", "nested/", "experiment-directory/", "with-a-long-name/"):
        assert name in text.replace("\n", "")
    assert "experiment-directory" in text  # not split mid-name
    assert "journal.log.lock" in text
    assert "No live process holds the journal open for writing" in " ".join(text.split())
    assert len(lines) < 30  # five locks took 63 lines, then 45 with the reason in column one
    reason = next(line for line in lines if line.startswith("No live process holds"))
    assert len(reason.rstrip()) > 60  # the reason uses the terminal's width
    assert screen.returncode == 1


def test_pipes_get_one_plain_line_per_artifact_with_every_field(tmp_path: Path) -> None:
    root = tree(tmp_path)
    result = invoke("scan", str(root))
    assert not any(c in result.stdout for c in "┏━│┃─")
    lines = [line for line in result.stdout.splitlines() if line.startswith("path=")]
    assert len(lines) == 5
    for line in lines:
        for field in ("verdict=", "kind=", "age=", "holder=", "journal=", "fs=", "reason="):
            assert field in line
    assert any("verdict=recent" in line and "study-c" in line for line in lines)
    assert sum("verdict=orphaned" in line for line in lines) == 3


def test_dry_run_shows_the_plan_the_summary_and_the_next_step(tmp_path: Path) -> None:
    root = tree(tmp_path)
    result = invoke("clean", "--dry-run", str(root))
    assert result.returncode == 1
    assert result.stdout.count("outcome=would-remove") == 3
    assert "3 would-remove" in result.stdout
    assert f"journal-doctor clean --force {root}" in result.stdout
    screen = in_terminal("clean", "--dry-run", str(root))
    assert "Plan (nothing was removed)" in screen.output
    for header in ("lock", "verdict", "outcome"):
        assert header in screen.output
    assert "3 would-remove" in screen.output


def test_declining_at_the_prompt_shows_the_plan_once_and_removes_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path)
    screen = in_terminal("clean", str(root), keys=b"n\r")
    assert screen.output.count("Plan (nothing was removed)") == 1
    assert "Remove 3 orphaned artifact(s)?" in screen.output
    assert screen.returncode == 1
    assert os.path.lexists(root / "study-a" / "journal.log.lock")


def test_ctrl_c_at_the_prompt_exits_130_and_removes_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path)
    screen = in_terminal("clean", str(root), keys=b"\x03")
    assert screen.returncode == 130
    assert "interrupted; nothing changed" in screen.output
    assert "Traceback" not in screen.output
    assert os.path.lexists(root / "study-a" / "journal.log.lock")


def test_yes_at_the_prompt_removes_what_is_orphaned(tmp_path: Path) -> None:
    root = tree(tmp_path)
    screen = in_terminal("clean", "--min-age", "5", str(root), keys=b"y\r")
    assert screen.output.count("Plan (nothing was removed)") == 1  # the plan once, then
    assert "Result" not in screen.output  # no second table: one line per removal
    assert screen.output.count("removed: ") == 3
    assert max(len(line) for line in screen.output.splitlines()) <= 80
    assert not os.path.lexists(root / "study-a" / "journal.log.lock")
    assert os.path.lexists(root / "study-c" / "journal.log.lock")  # recent: kept


def test_wait_says_what_it_waits_for_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "j.log").write_bytes(OP)
    os.symlink("j.log", tmp_path / "j.log.lock")  # brand new: recent for --min-age 3
    result = run_doctor("clean", "--force", "--wait", "10", "--min-age", "3", str(tmp_path))
    assert "waiting up to" in result.stderr
    assert "j.log.lock (recent)" in result.stderr
    assert result.returncode == 0
    assert not os.path.lexists(tmp_path / "j.log.lock")
    assert "waited" in result.stdout


def test_quiet_keeps_the_summary_and_verbose_counts_processes(tmp_path: Path) -> None:
    root = tree(tmp_path)
    quiet = invoke("scan", "-q", str(root))
    assert "path=" not in quiet.stdout
    assert "4 lock(s)" in quiet.stdout
    assert "journal-doctor clean" in quiet.stdout
    verbose = invoke("scan", "-v", str(root))
    assert "processes examined:" in verbose.stderr
    assert "holders:" not in verbose.stderr


def test_trials_fail_and_retry_together_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "j.log").write_bytes(OP)
    result = invoke("trials", "--fail", "--retry", str(tmp_path / "j.log"))
    assert result.returncode == 2
    assert "--fail and --retry" in result.stderr


def test_shell_completion_is_offered() -> None:
    # Typer asks which shell runs it (its parent process): run it from bash, as a user does
    # (the `exit` keeps bash from exec-ing the command in its place).
    script = f"'{PYTHON}' -m journal_doctor --show-completion; exit $?"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "complete -o default -F" in result.stdout
    assert "--install-completion" in invoke("--help").stdout


def test_an_unexpected_exception_is_one_line_and_exit_3() -> None:
    # A bug cannot be made on purpose without a fault: break one core function in the process.
    code = (
        "import sys, journal_doctor.locks.scan as s\n"
        "def boom(*a, **k): raise ZeroDivisionError('boom')\n"
        "s.scan = boom\n"
        "from journal_doctor.cli import main\n"
        "main(['scan', '.'])\n"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("journal-doctor: internal error: ZeroDivisionError: boom")
    assert "please report it" in line


def test_api_takes_one_path_or_many_and_names_outcomes_as_json_does(tmp_path: Path) -> None:
    import journal_doctor
    from journal_doctor import _WHERE

    # Every lazy name is exported and every export is lazy (or the version), and each one
    # resolves to an object that says what it is.
    assert set(journal_doctor.__all__) == {*_WHERE, "__version__"}
    for name in _WHERE:
        exported = getattr(journal_doctor, name)
        assert exported.__doc__, name
    tree(tmp_path)
    journal = tmp_path / "study-a" / "journal.log"  # a Path, as every function takes
    assert journal_doctor.check_journal(journal).healthy
    assert journal_doctor.list_trials(journal).journal == str(journal)
    assert journal_doctor.repair(journal, dry_run=True).journal == str(journal)
    assert len(journal_doctor.scan(str(tmp_path)).locks) == 4
    assert len(journal_doctor.scan(tmp_path).locks) == 4
    assert len(journal_doctor.scan([tmp_path / "study-a", tmp_path / "study-b"]).locks) == 2
    report = journal_doctor.clean(tmp_path / "study-b", dry_run=True)
    assert [o.outcome.value for o in report.outcomes] == ["would-remove"]
    document = json.loads(invoke("clean", "--dry-run", "--json", str(tmp_path)).stdout)
    assert set(document["outcomes"][0]) >= {f.name for f in dataclasses.fields(report.outcomes[0])}


COMMANDS = ["scan", "clean", "watch", "check", "repair", "trials", "migrate", "demo"]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_help_fits_80_columns_with_one_examples_block(command: str) -> None:
    page = subprocess.run([PYTHON, "-m", "journal_doctor", *([command] if command else []),
                           "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"}).stdout  # fmt: skip
    assert page.count("Examples:") == 1, page
    assert all(len(line) <= 80 for line in page.splitlines()), page
    if command:
        assert page.count("Exit codes:") == 1
    assert "(default: Optuna" not in page  # each default is stated once, by the option


def test_each_command_states_its_own_exit_codes() -> None:
    codes = {c: invoke(c, "--help").stdout.split("Exit codes:", 1)[1] for c in COMMANDS}
    assert "1 one is damaged" in codes["check"]
    assert "1 one is" in codes["trials"]
    assert "RUNNING" in codes["trials"]
    assert "nothing blocks a resume" not in codes["check"] + codes["trials"]
    assert all("2 usage error" in text for text in codes.values())


def readme_options() -> dict[str, set[str]]:
    """The options table of docs/commands.md: command -> every option spelling it lists."""
    text = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()
    table = text.split("| command | options |", 1)[1].split("\n\n", 1)[0]
    found: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        command, options = (cell.strip(" `") for cell in row.strip("|").split("|"))
        spellings = set()
        for option in options.split(", "):
            flag = option.strip("`").split(" ")[0]
            spellings.update(flag.split("/") if flag.startswith("-") else [flag])
        found[command] = {s for s in spellings if s.startswith("-")}
    return found


def test_the_options_table_agrees_with_help() -> None:
    """Every option a command has is in the table of docs/commands.md, and nothing else is."""
    import typer.main

    from journal_doctor.cli import app

    group = typer.main.get_command(app)
    documented = readme_options()
    commands = group.commands  # type: ignore[attr-defined]
    assert set(documented) == set(commands)
    for name, command in commands.items():
        actual = {
            spelling
            for param in command.params
            if not getattr(param, "hidden", False) and param.param_type_name == "option"
            for spelling in (*param.opts, *param.secondary_opts)
        } - {"-h", "--help"}
        assert documented[name] == actual, name


def test_a_command_built_alone_helps_and_refuses_as_in_the_whole_app() -> None:
    """`main` builds only the command its arguments name (start-up): that command's help, and
    its usage errors, are the whole app's, word for word; anything else gets the whole app."""
    import typer.main

    from journal_doctor.cli import COMMANDS, app
    from journal_doctor.cli.app import for_args

    assert len(for_args(COMMANDS, ["scan", "--json"]).registered_commands) == 1
    assert len(for_args(COMMANDS, ["--version"]).registered_commands) == len(COMMANDS)
    assert len(for_args(COMMANDS, ["scna"]).registered_commands) == len(COMMANDS)
    whole = typer.main.get_command(app)
    for command in COMMANDS:
        name = command.__name__
        alone = typer.main.get_command(for_args(COMMANDS, [name]))
        for args in ([name, "--help"], [name, "--no-such-option"]):
            assert _run_click(alone, args) == _run_click(whole, args), args


def _run_click(command: object, args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            command(args, prog_name="journal-doctor")  # type: ignore[operator]
        except SystemExit as done:
            return int(done.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_a_lost_or_unacquired_lock_is_one_line_and_exit_1_not_a_bug() -> None:
    from journal_doctor.cli import exit_code
    from journal_doctor.errors import LockLost, LockTimeout

    lost = LockLost("j.log.lock was broken while this process held it", path="j.log.lock",
                    journal="j.log")  # fmt: skip
    waited = LockTimeout("j.log.lock: not acquired in 60s", path="j.log.lock", waiting_on="x")
    assert exit_code(lost) == (1, "j.log.lock was broken while this process held it")
    assert exit_code(waited) == (1, "j.log.lock: not acquired in 60s")


def journal_with_a_running_trial(tmp_path: Path) -> tuple[Path, str]:
    """A journal whose one trial is RUNNING (asked, never told), and that trial's worker id."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    tmp_path.mkdir(exist_ok=True)
    journal = tmp_path / "j.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    optuna.create_study(study_name="s", storage=storage).ask()
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    (created,) = [line for line in lines if line["op_code"] == 4]  # CREATE_TRIAL
    return journal, str(created["worker_id"])


def test_check_and_trials_in_pipes_print_whole_logfmt_lines(tmp_path: Path) -> None:
    journal, worker = journal_with_a_running_trial(tmp_path)
    checked = invoke("check", str(journal))
    (line,) = checked.stdout.splitlines()
    assert line.startswith(f"journal={journal} health=healthy ")
    assert "trials=RUNNING:1" in line
    listed = invoke("trials", str(journal))
    assert listed.returncode == 1
    trial, step, command = listed.stdout.splitlines()
    assert f"worker={worker} " in trial  # the whole id, nothing cut
    assert "state=RUNNING" in trial
    assert step.startswith("1 trial(s) RUNNING. If no worker runs them any more,")
    assert command == f"  journal-doctor trials --retry {journal}"
    for output in (checked.stdout, listed.stdout):
        assert not any(c in output for c in "┏━│─╭"), output  # no box drawing in a pipe


def test_check_json_lists_the_open_trials_it_counts(tmp_path: Path) -> None:
    journal, worker = journal_with_a_running_trial(tmp_path)
    document = json.loads(invoke("check", "--json", str(journal)).stdout)
    (health,) = document["journals"]
    assert health["trials_by_state"]["RUNNING"] == 1
    (trial,) = health["open_trials"]
    assert (trial["state"], trial["worker_id"]) == ("RUNNING", worker)


def test_trials_fail_says_what_it_did_before_what_is_left(tmp_path: Path) -> None:
    journal, _ = journal_with_a_running_trial(tmp_path)
    done = invoke("trials", "--fail", "--force", str(journal))
    assert done.returncode == 0, done.stderr
    action, left = done.stdout.splitlines()
    assert action.startswith("trial 0 of s: failed")
    assert left == f"{journal}: no RUNNING or WAITING trials left."


def test_ctrl_c_during_clean_wait_says_interrupted_and_keeps_the_lock(tmp_path: Path) -> None:
    import signal

    (tmp_path / "j.log").write_bytes(OP)
    os.symlink("j.log", tmp_path / "j.log.lock")
    holder = subprocess.Popen([PYTHON, "-c", "import sys, time; f = open(sys.argv[1], 'ab');"
                               " print(flush=True); time.sleep(120)", str(tmp_path / "j.log")],
                              stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # it has the journal open for writing: the lock is active
        command = [
            PYTHON,
            "-m",
            "journal_doctor",
            "clean",
            "--force",
            "--wait",
            "60",
            str(tmp_path),
        ]
        clean = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert clean.stderr is not None
        assert "waiting up to" in clean.stderr.readline()
        clean.send_signal(signal.SIGINT)
        assert clean.wait(timeout=30) == 130
        assert clean.stderr.read().strip() == "journal-doctor: interrupted"
        assert os.path.lexists(tmp_path / "j.log.lock")
    finally:
        holder.kill()
        holder.wait()


def test_an_unknown_option_suggests_only_a_likely_typo() -> None:
    assert "Possible options" not in invoke("scan", "--bogus").stderr
    assert "--verbose" in invoke("scan", "--verbos").stderr


def test_watch_says_at_once_what_it_watches_and_ends_on_ctrl_c(tmp_path: Path) -> None:
    import signal

    watch = subprocess.Popen([PYTHON, "-m", "journal_doctor", "watch", "--interval", "60",
                              str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    assert watch.stderr is not None
    first = watch.stderr.readline()
    if not first.startswith("journal-doctor: watching"):
        watch.kill()
        raise AssertionError(first + watch.stderr.read())
    expected = f"journal-doctor: watching {tmp_path} every 60s: one line per event; Ctrl-C ends"
    assert first == expected + "\n"
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=30) == 0


def test_json_keys_are_present_only_with_what_was_collected(tmp_path: Path) -> None:
    journal, _ = journal_with_a_running_trial(tmp_path)
    with journal.open("ab") as f:
        f.write(b'{"op_code":5,"worker')  # a torn tail: repair has something to plan
    checked = json.loads(invoke("check", "--json", str(journal)).stdout)["journals"][0]
    assert len(checked["open_trials"]) == 1  # collected: the trial is listed
    planned = json.loads(invoke("repair", "--dry-run", "--json", str(journal)).stdout)
    (plan,) = planned["journals"]
    assert plan["before"]["trials_by_state"]["RUNNING"] == 1
    assert "open_trials" not in plan["before"]  # not collected there: absent, not []


def test_every_command_fits_a_real_80_column_terminal(tmp_path: Path) -> None:
    """Each command as a new user runs it, in a pty of 80x50: no line wider than the terminal,
    and at most 5 lines per lock in scan."""
    root = tree(tmp_path / "runs")
    healthy, _ = journal_with_a_running_trial(tmp_path / "healthy")
    journal, _ = journal_with_a_running_trial(tmp_path)
    with journal.open("ab") as f:
        f.write(b'{"op_code":5,"worker')
    runs = {
        "scan": ("scan", str(root)),
        "clean": ("clean", "--dry-run", str(root)),
        "check": ("check", str(journal)),
        "trials": ("trials", str(journal)),
        "repair": ("repair", "--dry-run", str(journal)),
        "migrate": ("migrate", "--dry-run", str(journal), f"sqlite:///{tmp_path}/new.db"),
        "migrate-healthy": ("migrate", "--dry-run", str(healthy), f"sqlite:///{tmp_path}/n.db"),
    }
    for name, args in runs.items():
        screen = in_terminal(*args, columns=80)
        assert "Traceback" not in screen.output, screen.output
        wide = [line for line in screen.output.splitlines() if len(line) > 80]
        assert not wide, (name, wide)
        if name == "scan":
            rows = screen.output.split("─" * 80, 1)[1].split("4 lock(s)")[0]
            blocks = [b for b in re.split(r"\n\s*\n", rows) if b.strip()]  # rows: blank lines
            assert len(blocks) == 5, blocks
            assert all(len(b.strip("\n").splitlines()) <= 5 for b in blocks), blocks


def test_pipes_and_json_never_import_rich(tmp_path: Path) -> None:
    """Rich costs start-up time: only a terminal (or Rich's FORCE_COLOR) pays for it."""
    tree(tmp_path)
    for args in (("scan",), ("scan", "--json"), ("clean", "--dry-run"), ("check",)):
        target = str(tmp_path / "study-a" / "journal.log") if args == ("check",) else str(tmp_path)
        done = subprocess.run([PYTHON, "-X", "importtime", "-m", "journal_doctor", *args, target],
                              capture_output=True, text=True, check=False)  # fmt: skip
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
        assert "rich" not in imported, args
        assert done.stdout, args
