"""A small reader of the protocol-buffers wire format, for importers of protobuf datasets.

``parse(buf, start, end)`` splits one message into its fields without knowing its schema; the
typed accessors (``double``, ``int64``, ``messages``, ...) then read a field as the schema says
it must be and raise ``WireError`` naming the field when its wire type is not the one the
schema allows. Nothing is allocated beyond what the bytes hold: every length is checked
against the bytes that remain before it is used.

Repeated scalars are read packed or unpacked (parsers must accept both). Groups (wire types 3
and 4, deprecated since proto2) are refused. ``points`` and ``fixed_layout`` decode runs of
small messages with a fixed byte layout in one numpy step and fall back to the field-by-field
path for anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5
WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "32-bit"}

#: One field occurrence: (wire type, a, b). Varint: a = the value; fixed: a = its first byte;
#: length-delimited: a, b = its first byte and one past its last.
Entry = tuple[int, int, int]
Fields = dict[int, list[Entry]]

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


class WireError(Exception):
    """Bytes that are not the message the schema describes.

    Args:
        field: the field's path, e.g. ``"tracks[3].states[10].center_x"``.
        problem: what is wrong, with the byte offset where it helps.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _varint(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise WireError(where, f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError(where, f"varint longer than 10 bytes at byte {pos}")


def parse(buf: bytes, start: int, end: int, where: str = "message") -> Fields:
    """Every field of the message ``buf[start:end]``, by field number, in the order met."""
    out: Fields = {}
    pos = start
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(buf, pos, end, where)
        number = tag >> 3
        wire = tag & 7
        if number == 0:
            raise WireError(where, f"field number 0 at byte {pos - 1} (not a protobuf message, or damaged)")
        if wire == VARINT:
            if pos < end and buf[pos] < 0x80:
                value = buf[pos]
                pos += 1
            else:
                value, pos = _varint(buf, pos, end, where)
            entry = (VARINT, value, 0)
        elif wire == LEN:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = _varint(buf, pos, end, where)
            if length > end - pos:
                raise WireError(where, f"field {number} claims {length} bytes at byte {pos}, only {end - pos} remain")
            entry = (LEN, pos, pos + length)
            pos += length
        elif wire == FIXED64:
            if pos + 8 > end:
                raise WireError(where, f"field {number}: truncated 64-bit value at byte {pos}")
            entry = (FIXED64, pos, 0)
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise WireError(where, f"field {number}: truncated 32-bit value at byte {pos}")
            entry = (FIXED32, pos, 0)
            pos += 4
        else:
            raise WireError(where, f"field {number} has wire type {wire} ({WIRE_NAMES.get(wire, 'invalid')}) at byte {pos}")
        found = out.get(number)
        if found is None:
            out[number] = [entry]
        else:
            found.append(entry)
    return out


def _wrong(where: str, name: str, wire: int, expected: str) -> WireError:
    return WireError(f"{where}.{name}", f"wire type {wire} ({WIRE_NAMES.get(wire, 'invalid')}), expected {expected}")


def _last(fields: Fields, number: int) -> Entry | None:
    found = fields.get(number)
    return found[-1] if found else None  # proto semantics: the last occurrence wins


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def double(buf: bytes, fields: Fields, number: int, where: str, name: str, default: float = 0.0) -> float:
    """An optional ``double`` field."""
    entry = _last(fields, number)
    if entry is None:
        return default
    if entry[0] != FIXED64:
        raise _wrong(where, name, entry[0], "1 (64-bit) for a double")
    return _DOUBLE.unpack_from(buf, entry[1])[0]


def float32(buf: bytes, fields: Fields, number: int, where: str, name: str, default: float = 0.0) -> float:
    """An optional ``float`` field."""
    entry = _last(fields, number)
    if entry is None:
        return default
    if entry[0] != FIXED32:
        raise _wrong(where, name, entry[0], "5 (32-bit) for a float")
    return _FLOAT.unpack_from(buf, entry[1])[0]


def int_(fields: Fields, number: int, where: str, name: str, default: int = 0, bits: int = 64) -> int:
    """An optional ``int32``/``int64``/enum/bool field (two's complement, ``bits`` wide)."""
    entry = _last(fields, number)
    if entry is None:
        return default
    if entry[0] != VARINT:
        raise _wrong(where, name, entry[0], "0 (varint)")
    return _signed(entry[1], bits)


def string(buf: bytes, fields: Fields, number: int, where: str, name: str, default: str = "") -> str:
    """An optional ``string`` field (UTF-8)."""
    entry = _last(fields, number)
    if entry is None:
        return default
    if entry[0] != LEN:
        raise _wrong(where, name, entry[0], "2 (length-delimited) for a string")
    try:
        return bytes(buf[entry[1] : entry[2]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"{where}.{name}", f"not UTF-8 text: {exc}") from None


def messages(fields: Fields, number: int, where: str, name: str) -> list[tuple[int, int]]:
    """A repeated (or optional) message field: the (start, end) of each occurrence."""
    out = []
    for wire, a, b in fields.get(number, ()):
        if wire != LEN:
            raise _wrong(where, name, wire, "2 (length-delimited) for a message")
        out.append((a, b))
    return out


def message(fields: Fields, number: int, where: str, name: str) -> tuple[int, int] | None:
    """An optional message field's (start, end), None when absent."""
    found = messages(fields, number, where, name)
    return found[-1] if found else None


def repeated_ints(buf: bytes, fields: Fields, number: int, where: str, name: str, bits: int = 64) -> list[int]:
    """A repeated ``int32``/``int64`` field, packed or not."""
    out: list[int] = []
    for wire, a, b in fields.get(number, ()):
        if wire == VARINT:
            out.append(_signed(a, bits))
        elif wire == LEN:
            pos = a
            while pos < b:
                value, pos = _varint(buf, pos, b, f"{where}.{name}")
                out.append(_signed(value, bits))
        else:
            raise _wrong(where, name, wire, "0 (varint) or 2 (packed)")
    return out


def repeated_doubles(buf: bytes, fields: Fields, number: int, where: str, name: str) -> np.ndarray:
    """A repeated ``double`` field, packed or not, as float64."""
    chunks: list[np.ndarray] = []
    singles: list[int] = []
    for wire, a, b in fields.get(number, ()):
        if wire == FIXED64:
            singles.append(a)
        elif wire == LEN:
            if (b - a) % 8:
                raise WireError(f"{where}.{name}", f"packed doubles of {b - a} bytes at byte {a}: not a multiple of 8")
            if singles:
                chunks.append(np.array([_DOUBLE.unpack_from(buf, s)[0] for s in singles]))
                singles = []
            chunks.append(np.frombuffer(buf, "<f8", (b - a) // 8, a).astype(np.float64))
        else:
            raise _wrong(where, name, wire, "1 (64-bit) or 2 (packed)")
    if singles:
        if not chunks and len(singles) > 1 and singles[-1] - singles[0] == 9 * (len(singles) - 1):
            # unpacked and contiguous: tag byte + 8 bytes each
            block = np.frombuffer(buf, np.uint8, 9 * len(singles), singles[0] - 1).reshape(-1, 9)
            return block[:, 1:].copy().view("<f8").ravel().astype(np.float64)
        chunks.append(np.array([_DOUBLE.unpack_from(buf, s)[0] for s in singles]))
    return np.concatenate(chunks) if chunks else np.zeros(0)


def fixed_layout(buf: bytes, ranges: Sequence[tuple[int, int]], layout: bytes, dtype: np.dtype) -> np.ndarray | None:
    """Decode messages that all have one byte layout in one numpy step, or None when they don't.

    Args:
        ranges: (start, end) of each message.
        layout: the expected bytes with 0 wherever a value goes (its tags are the non-zero ones);
            checked in every message.
        dtype: a packed structured dtype of ``len(layout)`` bytes whose fields are the tags and
            values, in order.
    """
    size = len(layout)
    if not ranges:
        return np.zeros(0, dtype)
    starts = np.fromiter((a for a, _ in ranges), np.int64, len(ranges))
    ends = np.fromiter((b for _, b in ranges), np.int64, len(ranges))
    if not (ends - starts == size).all():
        return None
    data = np.frombuffer(buf, np.uint8)
    block = data[starts[:, None] + np.arange(size)]
    template = np.frombuffer(layout, np.uint8)
    tags = template != 0
    if not (block[:, tags] == template[tags]).all():
        return None
    return block.view(dtype).ravel()


_POINT_LAYOUT = bytes([0x09] + [0] * 8 + [0x11] + [0] * 8 + [0x19] + [0] * 8)
_POINT_DTYPE = np.dtype([("t1", "u1"), ("x", "<f8"), ("t2", "u1"), ("y", "<f8"), ("t3", "u1"), ("z", "<f8")])


def points(buf: bytes, ranges: Sequence[tuple[int, int]], where: str) -> np.ndarray:
    """(P, 3) float64 from messages ``{double x = 1; double y = 2; double z = 3;}`` (absent: 0)."""
    fast = fixed_layout(buf, ranges, _POINT_LAYOUT, _POINT_DTYPE)
    if fast is not None:
        return np.column_stack([fast["x"], fast["y"], fast["z"]]).astype(np.float64)
    out = np.zeros((len(ranges), 3))
    for i, (a, b) in enumerate(ranges):
        at = f"{where}[{i}]"
        f = parse(buf, a, b, at)
        out[i] = (double(buf, f, 1, at, "x"), double(buf, f, 2, at, "y"), double(buf, f, 3, at, "z"))
    return out
