"""Complete lines of a journal, in bounded memory, exactly as Optuna's reader splits them."""

from __future__ import annotations

import os
from collections.abc import Iterator

CHUNK = 1 << 20
MAX_LINE = 16 << 20  # longer lines are not decoded (bounded memory); real ops are < 1 MiB


class LineReader:
    """Complete lines of a file in batches (one per chunk read), in bounded memory.

    Batch items are a complete line without its newline, or an int: the length (without the
    newline) of a line longer than `max_line`, which is not kept. After the batches are
    exhausted, `tail` holds the bytes after the last newline (or `tail_length` alone if that
    is oversized too).
    """

    def __init__(self, fd: int, chunk: int = CHUNK, max_line: int = MAX_LINE) -> None:
        self.fd = fd
        self.chunk = chunk
        self.max_line = max_line
        self.tail: bytes | None = b""
        self.tail_length = 0

    def __iter__(self) -> Iterator[list[bytes | int]]:
        pending = bytearray()  # the unfinished last line, grown in place (no quadratic copies)
        overflow = 0  # length so far of an oversized line being skipped
        while True:
            data = os.read(self.fd, self.chunk)
            if not data:
                break
            newline = data.find(b"\n")
            if newline < 0:
                if overflow:
                    overflow += len(data)
                elif len(pending) + len(data) > self.max_line:
                    overflow, pending = len(pending) + len(data), bytearray()
                else:
                    pending += data
                continue
            batch: list[bytes | int] = []
            if overflow:
                batch.append(overflow + newline)
                overflow = 0
            else:
                batch.append(bytes(pending) + data[:newline] if pending else data[:newline])
            pending = bytearray()
            parts = data[newline + 1 :].split(b"\n")
            pending += parts.pop()
            batch.extend(parts)
            yield batch
        if overflow:
            self.tail, self.tail_length = None, overflow
        else:
            self.tail, self.tail_length = bytes(pending), len(pending)


def batch_bytes(batch: list[bytes | int], end: int) -> int:
    """Bytes taken by the first `end` lines of a batch, newlines included."""
    try:
        return sum(map(len, batch[:end])) + end  # type: ignore[arg-type]
    except TypeError:  # an oversized line (an int) in the batch
        return sum(p if isinstance(p, int) else len(p) for p in batch[:end]) + end


def iter_lines(
    fd: int, chunk: int = CHUNK, max_line: int = MAX_LINE
) -> Iterator[tuple[int, bytes | None, int, bool]]:
    """(offset, line, length, complete) for each line of the file, in bounded memory.

    A complete line keeps its newline, exactly as Optuna's `for line in f` hands it to
    `json.loads` (which matters: the newline can decide whether NULs decode as UTF-32). The
    line is None when it is longer than `max_line` (only its length is known then).
    """
    reader = LineReader(fd, chunk, max_line)
    offset = 0
    for batch in reader:
        for part in batch:
            if type(part) is int:
                yield offset, None, part + 1, True
                offset += part + 1
            else:
                assert isinstance(part, bytes)
                yield offset, part + b"\n", len(part) + 1, True
                offset += len(part) + 1
    if reader.tail_length:
        yield offset, reader.tail, reader.tail_length, False
