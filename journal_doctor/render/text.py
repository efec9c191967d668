"""Making file names safe to show: nothing in a name may steer the terminal or Rich."""

from __future__ import annotations

import os
from functools import cache


def display_path(path: str) -> str:
    """A file name as printable text: control characters and undecodable bytes escaped.

    Rich markup in the result is harmless only because callers wrap it in `rich.text.Text`
    (which never parses markup); this function removes what could reach the terminal itself.
    """
    out: list[str] = []
    for char in path:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x100:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{code:02x}"))
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def json_path(path: str) -> str:
    """A file name as valid Unicode for JSON: undecodable bytes become `\\xNN` text."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@cache
def _is_directory(root: str) -> bool:
    return os.path.isdir(root)


def relative_to_root(path: str, root: str) -> str:
    if _is_directory(root):
        try:
            return os.path.relpath(path, root)
        except ValueError:
            return path
    return path


def wrap_path(path: str, width: int) -> str:
    """Break a long path into lines after a "/" so that no name is cut in the middle (only a
    single name longer than `width` is folded)."""
    if width <= 0 or len(path) <= width:
        return path
    parts = [part + "/" for part in path.split("/")]
    parts[-1] = parts[-1][:-1]
    lines: list[str] = []
    line = ""
    for part in parts:
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        while len(part) > width:
            lines.append(part[:width])
            part = part[width:]
        line += part
    lines.append(line)
    return "\n".join(lines)
