"""The `journal-doctor` command: each command parses, calls the core, renders, returns a code.

Exit codes: 0 nothing blocks a resume; 1 something needs attention; 2 usage error; 3 a bug;
130 interrupted. `main` is the one place that maps errors to them.
"""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ._version import __version__
from .errors import DoctorError, Interrupted, UsageError, os_error_advice, path_error
from .model import MIN_AGE, SHARED_MIN_AGE, CleanReport, Outcome, OutcomeKind, ScanReport
from .render import jsonout
from .render.text import display_path

if TYPE_CHECKING:
    from rich.console import Console

    from .actions.trials import TrialsReport
    from .journal.replay import OpenTrial
    from .locks.scan import ProgressEvent

# Help epilogs: click indents them by 2, so every line here stays within 78 columns.
EXAMPLES = {
    "scan": """
  # what locks are there, who holds them
  journal-doctor scan runs/
  # the same for scripts
  journal-doctor scan --json runs/ | jq .
  # a share this host cannot detect (sshfs)
  journal-doctor scan --shared /mnt/share""",
    "clean": """
  # what would be removed, and why
  journal-doctor clean --dry-run runs/
  # the pre-resume step
  journal-doctor clean --force --wait 60 runs/ && python train.py""",
    "watch": """
  # heal while the fleet runs (Ctrl-C ends)
  journal-doctor watch /shared/runs
  journal-doctor watch --json --interval 2 runs/ >> heal.log
  journal-doctor watch --fail-stale-trials --shared /mnt/nfs/runs""",
    "migrate": """
  journal-doctor migrate --dry-run runs/study.log sqlite:///study.db
  journal-doctor migrate --force runs/study.log \\
      postgresql+psycopg://user@db/optuna
  journal-doctor migrate --force --study s1 runs/study.log \\
      redis://localhost:6379/0""",
    "check": """
  # will Optuna load this journal?
  journal-doctor check runs/study.log
  # for scripts
  journal-doctor check --json runs/*.log""",
    "repair": """
  # what would change
  journal-doctor repair --dry-run runs/study.log
  # make it loadable, keeping every good line
  journal-doctor repair --force runs/study.log""",
    "trials": """
  # RUNNING/WAITING trials a crash left
  journal-doctor trials runs/study.log
  # fail them (asks first) and run them again
  journal-doctor trials --retry runs/study.log""",
    "demo": """
  journal-doctor demo
  # the drop-in storage: no clean needed
  journal-doctor demo --guarded""",
}
EXIT_CODES = {
    "scan": "0 nothing blocks a resume, 1 a lock, leftover or journal does",
    "clean": "0 nothing blocks a resume afterwards, 1 something still does",
    "watch": "0 ended by Ctrl-C or SIGTERM",
    "check": "0 every journal is healthy, 1 one is damaged",
    "repair": "0 every journal is healthy afterwards, 1 one is not",
    "trials": "0 no trial is left RUNNING, 1 one is",
    "migrate": "0 copied and verified (--dry-run: the copy would run), 1 not",
    "demo": "0 the demo ran",
}
COMMON_CODES = "2 usage error, 3 a bug (please report it), 130 interrupted."


def epilog(command: str) -> str:
    """One "Examples:" block and the exit codes that are true for this command."""
    codes = f"{EXIT_CODES[command]},\n  {COMMON_CODES}"
    return f"\b\nExamples:{EXAMPLES[command]}\n\n\b\nExit codes: {codes}\n"


app = typer.Typer(
    name="journal-doctor",
    help="Heal Optuna file journals after crashes: find stale locks, judge them, remove"
    " only what is provably orphaned; check and repair torn journals.",
    epilog="\b\nExamples:" + EXAMPLES["scan"] + EXAMPLES["clean"] + "\n",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@cache
def out() -> Console:
    """stdout for people in a terminal. Rich is imported only when a terminal is there:
    `--json`, plain lines for pipes and one-line errors never pay for it."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def for_people() -> bool:
    """A terminal gets Rich tables; a pipe or a log file gets plain lines (`render.plain`)."""
    import os

    # Rich's own overrides, read here so that a pipe never imports Rich to learn it is a pipe.
    forced = os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"
    return sys.stdout.isatty() or bool(forced)


def say(message: str) -> None:
    """One line on stderr, file names escaped, no Rich needed: one line in a log; in a
    terminal, wrapped at its width between words (a path is never broken)."""
    text = f"journal-doctor: {display_path(message)}"
    if sys.stderr.isatty():
        import shutil
        import textwrap

        width = shutil.get_terminal_size().columns
        text = textwrap.fill(text, width, subsequent_indent="  ", break_long_words=False,
                             break_on_hyphens=False)  # fmt: skip
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def echo_lines(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _version(value: bool) -> None:
    if value:
        print(f"journal-doctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Heal Optuna file journals after crashes."""


def _seconds(infinite: str) -> Callable[[float | None], float | None]:
    """Every duration option: NaN and negative are usage errors; `infinite` says what inf
    means for this one ("" where it means nothing useful, and is refused)."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if math.isnan(value) or value < 0 or (math.isinf(value) and not infinite):
            meaning = f" (inf: {infinite})" if infinite else ""
            raise typer.BadParameter(f"give a number of seconds >= 0{meaning}")
        return value

    return check


def seconds_option(name: str, help: str, infinite: str = "never by age") -> Any:
    return typer.Option(name, metavar="SECONDS", callback=_seconds(infinite), help=help)


Paths = Annotated[
    list[str] | None,
    typer.Argument(
        help="Directories (walked recursively, symlinked dirs not followed), journals or lock"
        " files. Default: the current directory.",
        metavar="[PATH...]",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine output (schema 1) on stdout, nothing else there.")
]
MinAge = Annotated[
    float,
    seconds_option(
        "--min-age",
        "How old a lock with no visible holder must be on a local filesystem before it is"
        " orphaned (inf: never by age).",
    ),
]
SharedMinAge = Annotated[
    float,
    seconds_option(
        "--shared-min-age",
        "The same where holders may be invisible: a network filesystem, a directory this host"
        " exports, a container (Optuna's own grace period).",
    ),
]
Shared = Annotated[
    bool,
    typer.Option(
        "--shared",
        help="Judge every path as shared with other hosts (--shared-min-age), e.g. a directory"
        " served over sftp/sshfs, which this host cannot detect.",
    ),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only the summary and next steps.")]
Verbose = Annotated[
    bool, typer.Option("-v", "--verbose", help="Progress on stderr (files, processes examined).")
]
Force = Annotated[bool, typer.Option("--force", "-f", help="Do it without asking (for scripts).")]
DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="Show the plan; change nothing.")]


def _progress(verbose: bool) -> Callable[[ProgressEvent], None] | None:
    if not verbose:
        return None

    def show(event: ProgressEvent) -> None:
        sys.stderr.write(f"{event.stage}: {event.total} {event.detail}".rstrip() + "\n")

    return show


def render_scan(report: ScanReport, json_output: bool, quiet: bool) -> None:
    if json_output:
        print(jsonout.dumps(jsonout.scan_json(report)))
    elif for_people():
        from .render import table

        table.render_scan(out(), report, quiet=quiet)
    else:
        from .render import plain

        echo_lines(plain.scan_lines(report, quiet=quiet))


@app.command(epilog=epilog("scan"))
def scan(
    paths: Paths = None,
    json_output: JsonOption = False,
    min_age: MinAge = MIN_AGE,
    shared_min_age: SharedMinAge = SHARED_MIN_AGE,
    shared: Shared = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Find every Optuna journal lock, say who holds it and whether it is safe to remove;
    and every journal whose damaged tail will crash the next worker.

    Verdicts: active (a write in flight), stuck (the holder is stopped), orphaned (no holder
    can exist: clean removes it), recent (too young to judge), unknown (a holder could exist
    where this host cannot see: another host, a container, an unreadable lock). Exit 1 when an
    orphaned/stuck/unknown lock, a leftover or a damaged journal remains.
    """
    from .locks.scan import scan as scan_core

    report = scan_core(
        paths or ".",
        min_age=min_age,
        shared_min_age=shared_min_age,
        shared=shared,
        progress=_progress(verbose),
    )
    render_scan(report, json_output, quiet)
    return 1 if report.needs_attention() else 0


def show_outcomes(report: ScanReport, outcomes: Sequence[Outcome], json_output: bool) -> None:
    """The plan before the question: on stderr under --json (stdout is for the document)."""
    if for_people() or json_output:
        from .render import table

        table.render_outcomes(err_console() if json_output else out(), report, outcomes)
    else:
        from .render import plain

        echo_lines(plain.outcome_lines(report, outcomes))


def ask(question: str) -> bool:
    """One question on stderr, default No. Ctrl-C here exits 130 with nothing changed."""
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        raise Interrupted("interrupted; nothing removed") from None


def no_terminal(action: str, forced: str) -> str:
    """Why a command that asks first did nothing: the same sentence, and the same two ways on,
    for every command."""
    return (
        f"refusing to {action} without confirmation (stdin is not a terminal): pass --force to"
        f" {forced} or --dry-run to only show the plan."
    )


class Confirmer:
    """clean's question: the plan, then one yes/no on stderr. Remembers whether it asked, so a
    declined clean does not print the plan a second time."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output
        self.asked = False

    def __call__(self, report: ScanReport, plan: tuple[Outcome, ...]) -> bool:
        count = sum(o.outcome is OutcomeKind.WOULD_REMOVE for o in plan)
        if not sys.stdin.isatty():
            say(no_terminal(f"remove {count} orphaned artifact(s)", "remove them"))
            return False
        show_outcomes(report, plan, self.json_output)
        self.asked = True
        return ask(f"Remove {count} orphaned artifact(s)?")


class WaitReporter:
    """What `clean --wait` waits for: live on a terminal, a line every few seconds otherwise
    (both on stderr, so stdout stays the result)."""

    EVERY = 5.0

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.status: Any = None
        self.last = -math.inf

    def __call__(self, report: ScanReport, left: float) -> None:
        import time

        waiting = report.transient()
        names = ", ".join(f"{display_path(lock.path)} ({lock.verdict.value})" for lock in waiting)
        text = f"waiting up to {left:.0f}s more for {len(waiting)} lock(s): {names}"
        if self.live:
            if self.status is None:
                from rich.status import Status

                self.status = Status(text, console=err_console())
                self.status.start()
            self.status.update(text)
        elif time.monotonic() - self.last >= self.EVERY:
            self.last = time.monotonic()
            say(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def render_clean(report: CleanReport, json_output: bool, quiet: bool, asked: bool) -> None:
    if json_output:
        print(jsonout.dumps(jsonout.clean_json(report)))
        from .render.advice import blind_spots

        for note in blind_spots(report.scan):  # why it did not clean, for whoever reads the log
            say(note)
        return
    # The question came after the plan: do not print the plan a second time.
    if for_people():
        from .render import table

        table.render_clean(out(), report, quiet=quiet, show_outcomes=not asked)
    else:
        from .render import plain

        echo_lines(plain.clean_lines(report, quiet=quiet, show_outcomes=not asked))


@app.command(epilog=epilog("clean"))
def clean(
    paths: Paths = None,
    dry_run: DryRun = False,
    force: Force = False,
    wait: Annotated[
        float,
        seconds_option(
            "--wait",
            "Re-scan until no write is in flight (no active/recent lock, none too young to"
            " judge), at most this long, then clean.",
            infinite="",
        ),
    ] = 0.0,
    json_output: JsonOption = False,
    min_age: MinAge = MIN_AGE,
    shared_min_age: SharedMinAge = SHARED_MIN_AGE,
    shared: Shared = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Scan, then remove what is orphaned (only that, --force included).

    Asks once before removing; --force skips the question; without a terminal and without
    --force it refuses. Each removal re-checks the holders and removes the lock only if it is
    still the very file that was judged. Exit 0 only when nothing blocks a resume afterwards.
    """
    from .locks.clean import clean as clean_core

    confirm = Confirmer(json_output)
    reporter = WaitReporter()
    try:
        report = clean_core(
            paths or ".",
            force=force,
            dry_run=dry_run,
            confirm=confirm,
            wait=wait,
            min_age=min_age,
            shared_min_age=shared_min_age,
            shared=shared,
            progress=_progress(verbose),
            on_wait=reporter,
        )
    finally:
        reporter.close()
    render_clean(report, json_output, quiet, asked=confirm.asked)
    return 1 if report.needs_attention() else 0


@app.command(epilog=epilog("watch"))
def watch(
    paths: Paths = None,
    interval: Annotated[
        float,
        seconds_option(
            "--interval", "Seconds between passes (each pass is `clean --force`).", infinite=""
        ),
    ] = 5.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per event and line, nothing else.")
    ] = False,
    min_age: MinAge = MIN_AGE,
    shared_min_age: SharedMinAge = SHARED_MIN_AGE,
    shared: Shared = False,
    fail_stale_trials: Annotated[
        bool,
        typer.Option(
            "--fail-stale-trials",
            help="Also mark FAIL the RUNNING trials whose guarded worker (journal_doctor."
            "storage) a heartbeat proves dead; nothing without that proof.",
        ),
    ] = False,
) -> int:
    """Keep healing while a fleet runs: `clean --force` every --interval, until SIGINT/SIGTERM.

    One line per event on stdout, flushed at once (--json: one object with time, event,
    path, verdict, reason): removed, stuck/unknown (first seen), cleared, conflict, failed,
    unreadable, missing (a root that vanished), trial-failed. Removes only what is orphaned,
    through the same break protocol as clean. Ends between passes, never inside a removal;
    exit 0.
    """
    import signal
    import threading

    from .watch import watch as watch_core

    if interval <= 0:
        raise UsageError("--interval must be > 0 seconds")
    stop = threading.Event()

    def finish(signum: int, frame: object) -> None:
        # Not stop.set() here: the handler runs in the main thread, which may hold the Event's
        # own lock at that moment (entering stop.wait), and set() would wait on it forever.
        threading.Thread(target=stop.set, daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, finish)
    from .render.advice import quoted

    # Something at once: a terminal that shows nothing until the first event looks hung.
    say(f"watching {quoted(paths or ['.'])} every {interval:g}s: one line per event;"
        " Ctrl-C ends")  # fmt: skip
    for event in watch_core(paths or ".", interval=interval, min_age=min_age,
                            shared_min_age=shared_min_age, shared=shared,
                            fail_stale_trials=fail_stale_trials, stop=stop):  # fmt: skip
        echo_lines([jsonout.event_line(event) if json_output else _event_text(event)])
    return 0


def _event_text(event: Any) -> str:
    import time

    from .render.plain import logfmt

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event.time))
    return f"{stamp} " + logfmt(
        (("event", event.event), ("path", display_path(event.path)),
         ("verdict", event.verdict or "-"), ("reason", display_path(event.reason)))
    )  # fmt: skip


Journals = Annotated[
    list[str], typer.Argument(help="Journal files.", metavar="JOURNAL...", show_default=False)
]


class LockChoice(str, enum.Enum):
    symlink = "symlink"
    open = "open"

    @property
    def kind(self) -> Any:
        from .model import LockKind

        return LockKind.FILE if self is LockChoice.open else LockKind.SYMLINK


LockOption = Annotated[
    LockChoice,
    typer.Option(
        "--lock",
        help="Lock kind to take when the journal has no lock: symlink (Optuna's default) or open"
        " (JournalFileOpenLock). An existing lock's kind always wins.",
    ),
]


def journal_or_fail(path: str) -> None:
    """A JOURNAL argument that cannot be looked at: one line saying why, and what to do."""
    import os

    try:
        os.lstat(path)
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no such journal; give the path of an Optuna journal file"
        ) from None
    except OSError as err:
        raise DoctorError(path_error(path, err)) from None


@app.command(epilog=epilog("check"))
def check(journals: Journals, json_output: JsonOption = False, quiet: Quiet = False) -> int:
    """Read each journal as Optuna would and say what Optuna will do with it.

    Streams the file in bounded memory, without optuna: bytes, ops, studies, trials by state,
    torn tail, fused lines, NUL runs, undecodable lines and non-op lines (line number, byte
    offset, error). Anything but an Optuna journal (its first line an op) is refused (exit 2).
    -q prints only each journal's verdict and its sentence. Exit 0 when every journal is
    healthy, 1 when one is damaged.
    """
    from .journal.check import check_journal

    for journal in journals:
        journal_or_fail(journal)
    results = [check_journal(journal, open_trials=True) for journal in journals]
    if json_output:
        print(jsonout.dumps(jsonout.check_json(results)))
    elif for_people():
        from .render.journal import render_health

        for health in results:
            render_health(out(), health, quiet=quiet)
    else:
        from .render import plain

        echo_lines([line for health in results for line in plain.health_lines(health, quiet=quiet)])
    return 0 if all(h.healthy for h in results) else 1


@app.command(epilog=epilog("repair"))
def repair(
    journals: Journals,
    dry_run: DryRun = False,
    force: Force = False,
    lock: LockOption = LockChoice.symlink,
    json_output: JsonOption = False,
) -> int:
    """Rewrite damaged journals so Optuna loads them again, keeping every good line.

    Refuses while the journal's lock is active, stuck, recent or unknown, or a live process has
    the journal open; refuses anything but an Optuna journal (exit 2). Holds the journal's lock
    meanwhile (workers started now wait), copies the original to JOURNAL.<UTC time>.bak, cuts a
    torn or NUL tail, salvages the op out of a fused line, moves undecodable and non-op lines to
    JOURNAL.quarantine, checks that Optuna loads the result, then renames it over the journal.
    Exit 0 when every journal is healthy afterwards.
    """
    from .actions.repair import RepairRefused, RepairReport
    from .actions.repair import repair as repair_core
    from .render.journal import render_repair

    for journal in journals:
        journal_or_fail(journal)

    def confirm(report: RepairReport) -> bool:
        if not sys.stdin.isatty():
            raise RepairRefused(no_terminal(f"repair {report.journal}", "repair it"))
        render_repair(err_console() if json_output else out(), report)
        return ask(f"Repair {display_path(report.journal)}?")

    reports = []
    code = 0
    for journal in journals:
        try:
            report = repair_core(
                journal, dry_run=dry_run, force=force, confirm=confirm, lock_kind=lock.kind
            )
        except DoctorError as error:
            if isinstance(error, Interrupted):
                raise
            say(str(error))
            code = max(code, error.exit_code)
            continue
        except OSError as error:
            say(f"{journal}: {os_error_advice(error)}")
            code = max(code, 1)
            continue
        reports.append(report)
        if not report.before.healthy and not report.performed:
            code = max(code, 1)
    if json_output:
        print(jsonout.dumps(jsonout.repair_json(reports)))
    else:
        for report in reports:
            render_repair(out(), report)
    return code


class TrialsQuestion:
    """trials' one question: the trials, then yes/no on stderr; no terminal, no (a refusal)."""

    def __init__(self, json_output: bool) -> None:
        self.json_output = json_output

    def __call__(self, report: TrialsReport, unproven: list[OpenTrial]) -> bool:
        if not sys.stdin.isatty():
            return False
        from .render.journal import render_trials

        render_trials(err_console() if self.json_output else out(), report)
        return ask(
            f"Fail {len(unproven)} trial(s) that no heartbeat proves abandoned? A worker may"
            " still be running them."
        )


def render_trials_report(report: TrialsReport, json_output: bool) -> None:
    if json_output:
        print(jsonout.dumps(jsonout.trials_json(report)))
    elif for_people():
        from .render.journal import render_trials

        render_trials(out(), report)
    else:
        from .render import plain

        echo_lines(plain.trials_lines(report))


@app.command(epilog=epilog("trials"))
def trials(
    journal: Annotated[
        str, typer.Argument(help="The journal file.", metavar="JOURNAL", show_default=False)
    ],
    fail_running: Annotated[
        bool, typer.Option("--fail", help="Mark every RUNNING trial FAIL.")
    ] = False,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry",
            help="Like --fail, and enqueue each one's parameters again (a trial killed before"
            " it had any parameters is only failed).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Without asking, also the trials no heartbeat proves abandoned (a worker may"
            " still be running them: be sure none is).",
        ),
    ] = False,
    lock: LockOption = LockChoice.symlink,
    json_output: JsonOption = False,
) -> int:
    """List trials a crash left RUNNING or WAITING; fail them, or fail and retry them.

    JournalStorage has no heartbeat, so a killed worker's trial stays RUNNING forever. A trial
    whose guarded worker's heartbeat proves it abandoned is failed on that proof. Any other
    RUNNING trial may still be running in a live worker (a plain worker keeps no file open while
    it evaluates), so failing it takes your word: in a terminal the trials and one question
    (default No); without one a refusal (exit 1, nothing written) unless --force. Writes wait
    for a live holder of the journal's lock and break a dead one's. The FAIL and the retried
    trial are written in the journal's own dialect (naive datetimes where its writers wrote
    naive ones), so Optuna 3.6 to the newest read them. Exit 1 while RUNNING trials remain.
    """
    from .actions.trials import fail_trials, list_trials

    if fail_running and retry:
        raise UsageError("--fail and --retry are one choice: --retry fails the trials too")
    journal_or_fail(journal)
    if fail_running or retry:
        report = fail_trials(journal, retry=retry, force=force, lock_kind=lock.kind,
                             confirm=TrialsQuestion(json_output))  # fmt: skip
    else:
        report = list_trials(journal)
    render_trials_report(report, json_output)
    running = [t for t in report.health.open_trials if t.state == "RUNNING"]
    return 1 if running else 0


@app.command(epilog=epilog("migrate"))
def migrate(
    journal: Annotated[
        str, typer.Argument(help="The journal file.", metavar="JOURNAL", show_default=False)
    ],
    url: Annotated[
        str,
        typer.Argument(
            help="Any RDB URL Optuna accepts (sqlite:///..., postgresql+psycopg://...,"
            " mysql+pymysql://...) or redis://HOST:PORT/DB (JournalRedisBackend).",
            metavar="URL",
            show_default=False,
        ),
    ],
    study: Annotated[
        list[str] | None,
        typer.Option("--study", metavar="NAME", help="Only this study (repeatable)."),
    ] = None,
    dry_run: DryRun = False,
    force: Force = False,
    json_output: JsonOption = False,
) -> int:
    """Copy a journal's studies to a database, then verify the copy trial by trial.

    Refused (exit 1, nothing created in the target) while the journal's lock is anything but
    orphaned or a process has it open, when the journal is damaged (run `repair` first), or when
    a study of the same name exists in the target. Copies directions, study attrs and every
    trial in order (state, including RUNNING and WAITING; params; values; intermediate values;
    attrs; times), loads both sides and compares them; prints the line to use in the training
    script. Asks before copying; --force skips the question. Exit 0 when verified, 1 naming
    the first difference. A copy cut short keeps what was committed and says how far it got
    and the `optuna delete-study` command that removes it before a second try.
    """
    from .actions.migrate import migrate as migrate_core

    journal_or_fail(journal)
    if dry_run or not force:
        planned = migrate_core(journal, url, studies=study or (), dry_run=True)
        if dry_run:
            _render_migrate(planned, json_output)
            return 0
        if not sys.stdin.isatty():
            raise DoctorError(no_terminal(f"migrate {journal}", "copy it"))
        _render_migrate(planned, json_output=False, stream=err_console() if json_output else None)
        if not ask(f"Copy {len(planned.studies)} study(ies) to {url}?"):
            return 1
    # Everything is checked again: the journal may have been taken while the question waited.
    with _copy_progress() as progress:
        report = migrate_core(journal, url, studies=study or (), progress=progress)
    _render_migrate(report, json_output)
    return 0 if report.verified else 1


@contextmanager
def _copy_progress() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr, on a terminal only; gone when the copy ends, however it ends."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task("copying trials", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _render_migrate(report: Any, json_output: bool, stream: Any = None) -> None:
    if json_output:
        print(jsonout.dumps(jsonout.migrate_json(report)))
        return
    lines = []
    verb = "Copied" if report.performed else "Would copy"
    for copy in report.studies:
        states = ", ".join(f"{n} {s}" for s, n in sorted(copy.trials_by_state.items())) or "none"
        lines.append(f"{verb} study {copy.name!r}: {sum(copy.trials_by_state.values())}"
                     f" trial(s) ({states})")  # fmt: skip
    if report.performed:
        if report.difference is None:
            lines.append(f"Verified: both sides load and every trial matches"
                         f" ({report.elapsed_seconds:.1f} s).")  # fmt: skip
            lines.append(f"In the training script: {report.storage_line}")
        else:
            lines.append(f"NOT verified: {report.difference}")
    if stream is not None:
        from rich.text import Text

        for line in lines:
            stream.print(Text(display_path(line)))
    else:
        echo_lines([display_path(line) for line in lines])


@app.command(epilog=epilog("demo"))
def demo(
    trials: Annotated[int, typer.Option(min=1, help="Trials the resumed study runs.")] = 3,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare", help="Also time Optuna resuming on its own (adds its 30 s grace period)."
        ),
    ] = False,
    guarded: Annotated[
        bool,
        typer.Option(
            "--guarded",
            help="The workers use journal_doctor.storage(): the next worker breaks the dead"
            " holder's lock itself, and fails and retries its trial.",
        ),
    ] = False,
) -> int:
    """Crash a real Optuna worker holding its lock, then scan, clean and resume, with timings.

    Runs in a temporary directory and removes it afterwards. Needs optuna (a dependency).
    """
    import time

    from rich.text import Text

    from .demo import run_demo, run_guarded_demo
    from .render import table

    started = time.monotonic()
    steps = run_guarded_demo(trials) if guarded else run_demo(trials=trials, compare=compare)
    for step in steps:
        out().rule(Text(step.title))
        if step.detail:
            out().print(Text(display_path(step.detail)))
        if step.scan is not None:
            table.render_scan(out(), step.scan, steps=False)  # the next step is the demo's
        if step.clean is not None:
            table.render_clean(out(), step.clean)
    out().rule(Text("Done"))
    out().print(Text(f"Demo finished in {time.monotonic() - started:.1f} s; nothing left behind."))
    return 0


def exit_code(error: BaseException) -> tuple[int, str | None]:
    """The one map from what went wrong to (exit code, the line to print)."""
    if isinstance(error, DoctorError):
        return error.exit_code, str(error)
    if isinstance(error, (KeyboardInterrupt, typer.Abort)):
        return 130, "interrupted"
    if isinstance(error, BrokenPipeError):
        return 1, None  # the reader went away (`| head`): nothing more to say
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return 1, f"{where}{os_error_advice(error)}"
    return 3, (
        f"internal error: {type(error).__name__}: {error}; this is a bug in journal-doctor"
        f" {__version__}: please report it with the command you ran"
    )


def _usage_error() -> type[Exception]:
    """Click's base of usage errors (typer >= 0.2x vendors click as `typer._click`; older
    typers use click itself, which may or may not be installed beside a newer one)."""
    import importlib

    try:
        module = importlib.import_module("typer._click.exceptions")
    except ImportError:
        module = importlib.import_module("click.exceptions")
    found: type[Exception] = module.ClickException
    return found


def _close_matches_only(error: Exception) -> None:
    """Click suggests any option within difflib's loose 0.6 (`scan --bogus`: "--verbose");
    keep only the suggestions that look like a typo of what was typed."""
    import difflib

    name, possibilities = getattr(error, "option_name", None), getattr(error, "possibilities", None)
    if name and possibilities:
        error.possibilities = difflib.get_close_matches(name, possibilities, cutoff=0.75)  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = app(args=argv, prog_name="journal-doctor", standalone_mode=False)
        if code == 130:  # Typer turns Ctrl-C into a bare exit code
            say("interrupted")
    except _usage_error() as error:  # usage: bad option, bad value
        _close_matches_only(error)
        error.show()  # type: ignore[attr-defined]
        code = error.exit_code  # type: ignore[attr-defined]
    except BaseException as error:
        if isinstance(error, SystemExit):
            raise
        code, line = exit_code(error)
        if line is not None:
            say(line)
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
