"""The messages of PostgreSQL's ``pgoutput`` logical decoding plugin, decoded from their
binary form (protocol version 1, as documented in "Logical Replication Message Formats"
of the PostgreSQL manual; every integer is big-endian, every string NUL-terminated).

A change stream reads one transaction at a time, in commit order: ``Begin``, then
``Relation`` (a table's columns, sent before its first change in a decoding session and
again when it changed), ``Type`` (a non-built-in type's name), ``Insert`` / ``Update`` /
``Delete`` / ``Truncate``, then ``Commit``. Column values come as text (the type's
output function), ``None`` for SQL NULL, or ``UNCHANGED`` for a TOASTed value an UPDATE
did not touch (PostgreSQL does not send it again).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from nimbus.errors import SourceUnavailable

# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
PG_EPOCH_US: Final = 946_684_800 * 1_000_000


class Unchanged:
    """A TOASTed column value an UPDATE left as it was: PostgreSQL does not send it."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
Value = str | None | Unchanged
Tuple = tuple[Value, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int  # where the transaction's commit record starts
    commit_us: int  # commit time, microseconds since the Unix epoch
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int  # just past the commit record: where decoding resumes after it
    commit_us: int


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    key: bool  # part of the table's replica identity


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    # d(efault: the primary key), n(othing), f(ull: every column), i(ndex)
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: Tuple


@dataclass(frozen=True)
class Update:
    relation_oid: int
    new: Tuple
    old: Tuple | None  # the whole old row (REPLICA IDENTITY FULL): "O"
    old_key: Tuple | None  # only the old key columns, when the key changed: "K"


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: Tuple | None  # the whole old row (REPLICA IDENTITY FULL)
    old_key: Tuple | None  # the key columns (others None)


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True)
class Ignored:
    """A message a change stream has no use for (a logical decoding message)."""

    tag: str


Message = (
    Begin | Commit | Relation | TypeInfo | Insert | Update | Delete | Truncate | Origin | Ignored
)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise SourceUnavailable(f"pgoutput message cut short: {self.data[:1]!r} message")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def byte(self) -> str:
        return self._take(1).decode("latin-1")

    def int8(self) -> int:
        return int(self._take(1)[0])

    def int16(self) -> int:
        return int(struct.unpack(">h", self._take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def uint32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def uint64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise SourceUnavailable("pgoutput string without its terminating NUL")
        text = self.data[self.at : end].decode("utf-8", errors="replace")
        self.at = end + 1
        return text

    def tuple(self) -> Tuple:
        values: list[Value] = []
        for _ in range(self.int16()):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind in ("t", "b"):
                # "b" (binary) only comes with the plugin's binary option, which nimbus
                # never asks for; read it as text would be wrong, so refuse it.
                raw = self._take(self.int32())
                if kind == "b":
                    raise SourceUnavailable("pgoutput sent a binary column value; ask for text")
                values.append(raw.decode("utf-8", errors="replace"))
            else:
                raise SourceUnavailable(f"unknown pgoutput column kind {kind!r}")
        return tuple(values)


def _timestamp(pg_us: int) -> int:
    return pg_us + PG_EPOCH_US


def decode(data: bytes) -> Message:
    """One pgoutput message (a row of ``pg_logical_slot_peek_binary_changes``)."""
    if not data:
        raise SourceUnavailable("empty pgoutput message")
    r = _Reader(bytes(data))
    tag = r.byte()
    if tag == "B":
        return Begin(r.uint64(), _timestamp(r.int64()), r.uint32())
    if tag == "C":
        r.int8()  # flags, unused
        return Commit(r.uint64(), r.uint64(), _timestamp(r.int64()))
    if tag == "R":
        oid, namespace, name = r.uint32(), r.string(), r.string()
        identity = chr(r.int8())
        columns = []
        for _ in range(r.int16()):
            flags = r.int8()
            col_name = r.string()
            columns.append(Column(col_name, r.uint32(), r.int32(), bool(flags & 1)))
        return Relation(oid, namespace, name, identity, tuple(columns))
    if tag == "Y":
        return TypeInfo(r.uint32(), r.string(), r.string())
    if tag == "I":
        oid = r.uint32()
        if r.byte() != "N":
            raise SourceUnavailable("pgoutput Insert without its new tuple")
        return Insert(oid, r.tuple())
    if tag == "U":
        oid = r.uint32()
        old = old_key = None
        kind = r.byte()
        if kind == "O":
            old, kind = r.tuple(), r.byte()
        elif kind == "K":
            old_key, kind = r.tuple(), r.byte()
        if kind != "N":
            raise SourceUnavailable("pgoutput Update without its new tuple")
        return Update(oid, r.tuple(), old, old_key)
    if tag == "D":
        oid = r.uint32()
        kind = r.byte()
        if kind not in ("O", "K"):
            raise SourceUnavailable("pgoutput Delete without its old tuple")
        values = r.tuple()
        return Delete(oid, values if kind == "O" else None, values if kind == "K" else None)
    if tag == "T":
        count, options = r.int32(), r.int8()
        oids = tuple(r.uint32() for _ in range(count))
        return Truncate(oids, bool(options & 1), bool(options & 2))
    if tag == "O":
        return Origin(r.uint64(), r.string())
    if tag == "M":
        return Ignored(tag)
    raise SourceUnavailable(f"unknown pgoutput message {tag!r} (nimbus reads protocol version 1)")


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
