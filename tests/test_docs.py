"""The documentation a newcomer reads: short, every link resolves, and the reference pages
keep what the README left out."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found, code = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            code = not code
        if not code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", link):
                continue  # an absolute URL
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.name}: {link} (no such heading)")
    assert not broken, broken


def test_the_readme_is_short_and_starts_with_the_two_set_up_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 200
    demo, tests = lines[3], lines[4]
    assert demo.startswith("python3 -m venv .venv ")
    assert demo.endswith("journal-doctor demo")
    assert tests.startswith("python3 -m venv .venv-test ")  # a venv of its own
    assert tests.endswith("python -m pytest -q")


def test_the_troubleshooting_table_quotes_optuna_s_own_messages() -> None:
    """The lock messages users search for, word for word as the installed Optuna's source
    writes them (two string literals each)."""
    import optuna.storages.journal._file as optuna_file

    source = Path(optuna_file.__file__).read_text()
    readme = (ROOT / "README.md").read_text()
    quoted = {
        ("The existing lock file has not been released ",
         "for an extended period. Forcibly releasing the lock file."),
        ("It is taking longer than {warning_interval} seconds to acquire ",
         "the lock file: {self._lock_file} Retrying..."),
    }  # fmt: skip
    for first, second in quoted:
        assert first in source
        assert second in source
        shown = (first + second).replace("{warning_interval}", "10.0")
        shown = shown.replace("{self._lock_file}", "runs/j.log.lock")
        assert shown in readme
