"""The public API as a contract: one exception for a missing journal everywhere, and the
signatures of every export, compared with a snapshot (`tests/api_snapshot.txt`). A change to
the snapshot is a change users see: regenerate it on purpose and say so in CHANGELOG.md:

    python tests/test_api.py > tests/api_snapshot.txt
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from pathlib import Path

import pytest

import journal_doctor

SNAPSHOT = Path(__file__).parent / "api_snapshot.txt"


def describe(name: str) -> str:
    """One line per export: a function's signature, a record's fields, an enum's values, an
    exception's bases."""
    obj = getattr(journal_doctor, name)
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        return f"enum {name}: {', '.join(str(m.value) for m in obj)}"
    if isinstance(obj, type) and issubclass(obj, BaseException):
        bases = ", ".join(b.__name__ for b in obj.__bases__)
        return f"exception {name}({bases}){inspect.signature(obj.__init__)}"
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        fields = ", ".join(f"{f.name}: {f.type}" for f in dataclasses.fields(obj))
        return f"record {name}({fields})"
    if isinstance(obj, type) and hasattr(obj, "_fields"):  # a NamedTuple
        hints = {f: getattr(t, "__forward_arg__", t) for f, t in obj.__annotations__.items()}
        return f"record {name}({', '.join(f'{f}: {hints.get(f)}' for f in obj._fields)})"
    if callable(obj):
        return f"def {name}{inspect.signature(obj)}"
    return f"{name}: {type(obj).__name__}"


def api() -> str:
    names = sorted(n for n in journal_doctor.__all__ if n != "__version__")
    return "\n".join(describe(name) for name in names) + "\n"


def test_the_public_signatures_are_the_snapshot() -> None:
    assert api() == SNAPSHOT.read_text(), __doc__


# Named in signatures but not records: callback types (their shape is in the docstrings), the
# path argument, and Optuna's own storage class.
NOT_RECORDS = {"BeforeBreak", "BeforeReplace", "Confirm", "Iterable", "JournalStorage", "OnWait",
               "PathArg", "Progress", "StaleTrialCallback", "PathLike",
               "Exception", "FileNotFoundError", "OSError", "TimeoutError", "None", "True", "False",
               "SYMLINK"}  # fmt: skip


def test_every_type_an_export_names_is_exported() -> None:
    """A user can import every record and enum that a public function returns or a public
    record holds (`from journal_doctor import OpenTrial`), down to the last field."""
    named = set(re.findall(r"\b[A-Z][A-Za-z]+\b", api()))
    described = {line.split()[1].split("(")[0].rstrip(":") for line in api().splitlines()}
    assert sorted(named - described - NOT_RECORDS) == []


@pytest.mark.parametrize("function", ["check_journal", "repair", "list_trials", "fail_trials"])
def test_a_missing_journal_is_one_exception_everywhere(tmp_path: Path, function: str) -> None:
    missing = tmp_path / "missing.log"
    with pytest.raises(journal_doctor.NoJournal) as raised:
        getattr(journal_doctor, function)(missing)
    assert raised.value.path == str(missing)
    assert isinstance(raised.value, FileNotFoundError)  # what callers caught before
    assert (
        str(raised.value) == f"{missing}: no such journal; give the path of an Optuna journal file"
    )


if __name__ == "__main__":
    print(api(), end="")
