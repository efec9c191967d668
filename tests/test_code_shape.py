"""The shape the code keeps: functions short enough to read at once. (The layers are kept by
`lint-imports`, run by .ci/run, from the contract in pyproject.toml.)"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "journal_doctor"


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for source in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long.append(
                        f"{source.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length}"
                    )
    assert not long, long
