r"""Reading a CSV file for `COPY`: the server parses it, we only look at bytes.

PostgreSQL's CSV parser is far faster than any done in Python, so the file's bytes go to
`COPY ... (FORMAT csv)` as they are; the staging table numbers the records itself. The client
scans lines with C-speed byte operations, tracking quote parity to find records that span
lines (quoted newlines), to keep where records start (`RecordStream.anchors`), to refuse NUL
bytes and unterminated quotes naming the line before the server sees them, and to drop blank
lines (which COPY would read as a record). Only chunks with a blank line, or a line that is
COPY's end marker `\.`, are rewritten.

Supported: a header row; UTF-8 (with or without BOM) or a named ASCII-compatible encoding
(converted by the server); comma, semicolon, tab or pipe, given or detected from the header;
LF or CRLF; fields quoted with `"` and `""` as the escaped quote, with embedded delimiters and
newlines. An unquoted empty field is missing (NULL); a quoted empty field `""` is an empty string.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 18
DELIMITERS = {
    ",": ",",
    ";": ";",
    "\t": "\t",
    "|": "|",
    "tab": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "\\t": "\t",
}
# Python's codec name -> PostgreSQL's. Only encodings in which every ASCII byte means ASCII:
# the quote, newline and delimiter scan relies on it.
PG_ENCODINGS = {
    codecs.lookup(python).name: postgres
    for python, postgres in [
        ("utf-8", "UTF8"),
        ("latin-1", "LATIN1"),
        ("iso-8859-15", "LATIN9"),
        ("windows-1252", "WIN1252"),
        ("windows-1250", "WIN1250"),
        ("windows-1251", "WIN1251"),
        ("windows-1253", "WIN1253"),
        ("windows-1254", "WIN1254"),
        ("windows-1257", "WIN1257"),
        ("iso-8859-2", "LATIN2"),
        ("iso-8859-5", "ISO_8859_5"),
        ("iso-8859-7", "ISO_8859_7"),
        ("koi8-r", "KOI8R"),
        ("ascii", "SQL_ASCII"),
    ]
}
MAX_COLUMNS = 1500  # PostgreSQL allows 1600 per table; two are ours
MAX_HEADER_BYTES = 1 << 20
# The longest record (all its lines): the reader holds one record at a time, so this bounds its
# memory, and a file with no line ends (or an unclosed quote) fails early instead of late.
MAX_RECORD_BYTES = 16 << 20


class CsvError(Exception):
    """Bad input, with the physical line (and column) where it was found."""

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}" + (f", column {column}" if column else "") if line else ""
        super().__init__(f"{where}: {message}" if where else message)

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "message": self.message}


def pg_encoding(name: str | None) -> tuple[str, str]:
    """(Python codec name, PostgreSQL name) for an encoding name as a user writes it."""
    try:
        codec = codecs.lookup(name or "utf-8").name
    except LookupError:
        raise CsvError(f"unknown encoding {name!r}") from None
    if codec not in PG_ENCODINGS:
        raise CsvError(
            f"encoding {name!r} is not supported; use one of: utf-8, latin-1, windows-1252, "
            "iso-8859-15 and the other single-byte ones"
        )
    return codec, PG_ENCODINGS[codec]


def parse_delimiter(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in DELIMITERS:
        raise CsvError(f"delimiter must be one of , ; tab | (not {value!r})")
    return DELIMITERS[value]


@dataclass
class Header:
    names: list[str]  # unique, as shown to users
    delimiter: str
    lines: int  # physical lines the header takes
    size: int  # bytes, including the BOM
    crlf: bool = False  # lines end with CR LF
    raw: bytes = b""  # the header's bytes as read, BOM included


def unique_names(raw: list[str]) -> list[str]:
    """Blank names become `column_<n>`; a repeated name gets `_2`, `_3` (case-insensitively)."""
    names: list[str] = []
    seen: set[str] = set()
    for position, name in enumerate(raw, start=1):
        base = name.strip() or f"column_{position}"
        candidate, n = base, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate.lower())
        names.append(candidate)
    return names


def read_header(stream: io.BufferedReader, codec: str, delimiter: str | None) -> Header:
    """Read the first record; leaves the stream just after it."""
    start = stream.peek(8192)[:8192]
    if b"\x00" in start and not start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        at = start.index(b"\x00")
        raise CsvError(
            "NUL byte: this does not look like a text file", line=start[:at].count(b"\n") + 1
        )
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvError("UTF-16 files are not supported: save the file as UTF-8", line=1)
    bom = len(codecs.BOM_UTF8) if start.startswith(codecs.BOM_UTF8) else 0
    stream.read(bom)
    raw, lines, quoted = b"", 0, 0
    while True:
        line = stream.readline(MAX_HEADER_BYTES)
        if not line:
            break
        lines += 1
        raw += line
        if b"\x00" in line:
            raise CsvError("NUL byte: this does not look like a text file", line=lines)
        quoted ^= line.count(b'"') & 1
        if not quoted or len(raw) >= MAX_HEADER_BYTES:
            break
    if not raw.strip():
        raise CsvError("the file is empty: a header row is needed", line=1)
    if quoted:
        raise CsvError("unterminated quoted field in the header", line=1)
    if b"\n" not in raw and b"\r" in raw.rstrip(b"\r"):
        raise CsvError("old Mac line endings (CR only) are not supported: use LF or CRLF", line=1)
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise CsvError(f"the header is not valid {codec}: {exc.reason}", line=1) from None
    try:
        delimiter = delimiter or detect_delimiter(text)
        fields = next(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True), [])
    except csv.Error as exc:  # the file's own defect: no retry, the line named
        raise CsvError(_header_problem(exc), line=1) from None
    if len(fields) > MAX_COLUMNS:
        raise CsvError(f"{len(fields)} columns; at most {MAX_COLUMNS} are supported", line=1)
    return Header(
        unique_names(fields),
        delimiter,
        lines,
        bom + len(raw),
        crlf=raw.endswith(b"\r\n"),
        raw=start[:bom] + raw,
    )


def _header_problem(exc: csv.Error) -> str:
    reason = str(exc)
    if "field larger than field limit" in reason:
        return f"a header name is longer than {csv.field_size_limit():,} characters"
    return f"the header row is not valid CSV ({reason}): quote a name that holds a quote"


def detect_delimiter(header: str) -> str:
    """The candidate that splits the header into the most fields; comma on a tie."""
    best, best_count = ",", 1
    for candidate in (",", ";", "\t", "|"):
        count = len(next(csv.reader(io.StringIO(header), delimiter=candidate), []))
        if count > best_count:
            best, best_count = candidate, count
    return best


BLANK = (b"", b"\r")
END_MARKER = (b"\\.", b"\\.\r")  # a line COPY would take for the end of the data
QUOTED_MARKER = b'"\\."'  # the same value, as data


# Every byte but the quote and the newline: deleted, they leave each line as its quotes alone.
_NOT_QUOTE_OR_NEWLINE = bytes(b for b in range(256) if b not in b'"\n')
_BLANK_LINE = re.compile(rb"\n\r?\n")


def _one_line_each(body: bytes) -> int | None:
    """How many lines `body` holds when each is one record COPY may read as it is (no quoted
    field spans lines, no blank line, no line that is COPY's end marker `\\.`); else None.
    Everything runs in C, in a few passes over the bytes."""
    if not body or body[:1] == b"\n" or body[-1:] == b"\n" or _BLANK_LINE.search(body):
        return None  # blank lines: COPY would read each as a record
    if b"\r" in body and (body == b"\r" or body[:2] == b"\r\n" or body[-2:] == b"\n\r"):
        return None
    if b"\\" in body and any(line in END_MARKER for line in body.split(b"\n")):
        return None
    if b'"' not in body:
        return body.count(b"\n") + 1
    # Quotes and newlines alone, then without pairs of quotes (a pair never spans a newline):
    # a quote left over is a line with an odd number of them, opening or closing a field that
    # runs on to another line.
    quotes = body.translate(None, _NOT_QUOTE_OR_NEWLINE)
    if b'"' in quotes.replace(b'""', b""):
        return None
    return quotes.count(b"\n") + 1


class RecordStream:
    """The data records after the header, as byte chunks for COPY (the file's own bytes, less
    blank lines).

    `records`, `lines` and `bytes_read` grow as it goes. `anchors` says where records start:
    (record, line) pairs where "one line per record" breaks, the first record included; between
    two anchors, records follow on consecutive lines. `line_of(record)` applies them: the
    server's errors count records, not lines."""

    def __init__(self, stream: BinaryIO, header: Header, delimiter: str) -> None:
        self.stream = stream
        self.digest = hashlib.sha256(header.raw)  # of the whole file, as it streams by
        self._pending_line = 0  # where the open record (`pending`) starts, and its size
        self._pending_bytes = 0
        self.crlf = header.crlf
        self.records = 0
        self.lines = header.lines  # physical lines consumed
        self.bytes_read = header.size
        self.anchors: list[tuple[int, int]] = [(1, header.lines + 1)]

    def line_of(self, record: int) -> int:
        at = bisect.bisect_right(self.anchors, (record, math.inf)) - 1
        anchor_record, anchor_line = self.anchors[max(at, 0)]
        return anchor_line + (record - anchor_record)

    def _place(self, record: int, line: int) -> None:
        anchor_record, anchor_line = self.anchors[-1]
        if line == anchor_line + (record - anchor_record):
            return
        if record == anchor_record:  # blank lines before it: the record starts further on
            self.anchors[-1] = (record, line)
        else:
            self.anchors.append((record, line))

    def __iter__(self) -> Iterator[bytes]:
        # The line being read, as the chunks it came in: joined once when its end arrives, so a
        # long line costs its length, not its length squared.
        tail: list[bytes] = []
        tail_size = 0
        pending: list[bytes] | None = None  # lines of a record whose quote is still open
        while True:
            chunk = self.stream.read(CHUNK)
            if not chunk:
                break
            self.bytes_read += len(chunk)
            self.digest.update(chunk)
            if b"\x00" in chunk:  # the tail holds no newline: count the chunk's
                raise CsvError(
                    "NUL byte: this does not look like a text file",
                    line=self.lines + chunk.count(b"\n", 0, chunk.index(b"\x00")) + 1,
                )
            cut = chunk.rfind(b"\n")
            if cut < 0:
                tail.append(chunk)
                tail_size += len(chunk)
                self._check_size(pending, tail_size)
                continue
            self._check_size(pending, tail_size + chunk.index(b"\n"))  # the line ending here
            body = b"".join([*tail, chunk[:cut]]) if tail else chunk[:cut]
            rest = chunk[cut + 1 :]
            tail, tail_size = ([rest] if rest else []), len(rest)
            lines = _one_line_each(body) if pending is None else None
            if lines is not None:
                out = self._one_line_records(body, lines)
            else:
                out, pending = self._records(body.split(b"\n"), pending)
                self._check_size(pending, tail_size)
            if out:
                yield out
        last = b"".join(tail)
        if last.strip(b"\r") or pending is not None:
            if self.crlf and last and not last.endswith(b"\r"):
                last += b"\r"  # one line ending throughout, as COPY requires
            out, pending = self._records([last] if last else [], pending)
            if pending is not None:
                raise CsvError(
                    "unterminated quoted field: the quote opened here never closes",
                    line=self._pending_line,
                )
            if out:
                yield out

    def _check_size(self, pending: list[bytes] | None, line_bytes: int) -> None:
        """Refuse a record past MAX_RECORD_BYTES (its open lines, plus `line_bytes` of the line
        being read), naming the line it starts on, before holding more of it."""
        size = line_bytes + (self._pending_bytes + 1 if pending is not None else 0)
        if size > MAX_RECORD_BYTES:
            raise CsvError(
                f"a record longer than {MAX_RECORD_BYTES // 2**20} MiB starts on this line "
                "(an unclosed quote, or not a CSV file?)",
                line=self._pending_line if pending is not None else self.lines + 1,
            )

    def _one_line_records(self, body: bytes, lines: int) -> bytes:
        """Lines that are each one record (the common case): passed on as they are."""
        self._place(self.records + 1, self.lines + 1)
        self.records += lines
        self.lines += lines
        return body + b"\n"

    def _records(
        self, parts: list[bytes], pending: list[bytes] | None
    ) -> tuple[bytes, list[bytes] | None]:
        """Line by line: group lines into records by quote parity, skip blank lines, quote a
        line that COPY would take for its end marker."""
        out: list[bytes] = []
        for p in parts:
            self.lines += 1
            if pending is None:
                if p in BLANK:
                    continue
                if p.count(b'"') & 1:  # a quoted field runs on to the next line
                    pending, self._pending_line, self._pending_bytes = [p], self.lines, len(p)
                    continue
                self.records += 1
                self._place(self.records, self.lines)
                out.append(QUOTED_MARKER + p[2:] if p in END_MARKER else p)
                continue
            pending.append(p)
            self._pending_bytes += len(p) + 1
            if p.count(b'"') & 1:  # ... and closes on this one
                self.records += 1
                self._place(self.records, self._pending_line)
                self._place(self.records + 1, self.lines + 1)
                out.append(b"\n".join(pending))
                pending = None
        return (b"\n".join(out) + b"\n" if out else b""), pending
