"""TFRecord framing, read without TensorFlow: records, their masked CRC-32C checks, a streaming reader.

A TFRecord file is a sequence of records, each::

    uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data

where ``masked(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8`` (mod 2^32). ``iter_records`` yields
one record at a time (memory bounded by the largest record) and checks both CRCs; a length
beyond the end of the file, a short read or a wrong CRC raises ``ScenarioError`` naming the
file, the record's index and its byte offset.

CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) comes from the ``google-crc32c`` package
when its C implementation is installed, else from ``crc32c_numpy``: a byte table applied to
many slices of the data at once with numpy, whose partial CRCs are then combined.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scenarios.errors import ScenarioError

HEADER_BYTES = 12
FOOTER_BYTES = 4
_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]
#: Below this many bytes the plain byte loop beats the sliced numpy version.
_SLICED_MIN_BYTES = 4096


def _register(data: bytes | memoryview, reg: int) -> int:
    """The CRC register after feeding ``data`` into ``reg`` (no pre/post inversion)."""
    table = _TABLE_LIST
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _zeros_operator(count: int) -> np.ndarray:
    """(4, 256) tables of the linear map 'feed ``count`` zero bytes' on the register, byte by byte."""
    basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    for _ in range(count):
        basis = _TABLE[basis & 0xFF] ^ (basis >> 8)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256, 8)
    tables = np.zeros((4, 256), np.uint32)
    for k in range(4):
        chosen = np.where(bits.astype(bool), basis[8 * k : 8 * k + 8][None, :], np.uint32(0))
        tables[k] = np.bitwise_xor.reduce(chosen, axis=1)
    return tables


def crc32c_numpy(data: bytes | memoryview) -> int:
    """CRC-32C of ``data`` in numpy: about sqrt(n) slices advanced together, then combined.

    The register update is linear over GF(2), so the CRC of A||B is the register of A carried
    through len(B) zero bytes, XOR the register of B fed from zero.
    """
    view = memoryview(data).cast("B")
    n = len(view)
    if n < _SLICED_MIN_BYTES:
        return _register(view, 0xFFFFFFFF) ^ 0xFFFFFFFF
    slices = int(np.sqrt(n))
    length = n // slices
    head = n - slices * length
    reg = _register(view[:head], 0xFFFFFFFF)
    block = np.frombuffer(view, np.uint8, slices * length, head).reshape(slices, length)
    regs = np.zeros(slices, np.uint32)
    for j in range(length):
        regs = _TABLE[(regs ^ block[:, j]) & 0xFF] ^ (regs >> 8)
    shift = [[int(v) for v in row] for row in _zeros_operator(length)]
    t0, t1, t2, t3 = shift
    for part in regs.tolist():
        reg = t0[reg & 0xFF] ^ t1[(reg >> 8) & 0xFF] ^ t2[(reg >> 16) & 0xFF] ^ t3[reg >> 24] ^ part
    return reg ^ 0xFFFFFFFF


def _fast_crc32c():
    try:
        import google_crc32c
    except ImportError:
        return None
    if getattr(google_crc32c, "implementation", "") != "c":
        return None
    return google_crc32c.value


_FAST = _fast_crc32c()


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data`` (the package's C code when installed, else ``crc32c_numpy``)."""
    if _FAST is not None:
        return int(_FAST(bytes(data)))
    return crc32c_numpy(data)


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def looks_like_tfrecord(head: bytes) -> bool:
    """True when ``head`` starts with a TFRecord header whose length CRC checks."""
    return len(head) >= HEADER_BYTES and masked_crc(head[:8]) == _U32.unpack_from(head, 8)[0]


def frame(data: bytes) -> bytes:
    """``data`` as one TFRecord record (for writing test files and tools)."""
    length = _U64.pack(len(data))
    return length + _U32.pack(masked_crc(length)) + data + _U32.pack(masked_crc(data))


def iter_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(index, byte offset, data) of each record of a TFRecord file, checked, one at a time.

    Raises:
        ScenarioError: naming the file, the record and its offset: a short header, a length
            beyond the end of the file, a truncated record or a wrong CRC.
    """
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    with fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        offset = 0
        index = 0
        while offset < size:
            where = f"record {index}"
            header = fh.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES:
                raise ScenarioError(
                    path, where, f"truncated record header at byte {offset}: {len(header)} of {HEADER_BYTES} bytes"
                )
            (length,) = _U64.unpack_from(header, 0)
            (length_crc,) = _U32.unpack_from(header, 8)
            if masked_crc(header[:8]) != length_crc:
                raise ScenarioError(
                    path, where, f"length CRC mismatch at byte {offset} (damaged file, or not a TFRecord file)"
                )
            remaining = size - offset - HEADER_BYTES - FOOTER_BYTES
            if length > remaining:
                problem = f"record at byte {offset} claims {length} bytes, the file holds {max(remaining, 0)} more: truncated"
                raise ScenarioError(path, where, problem)
            data = fh.read(length)
            footer = fh.read(FOOTER_BYTES)
            if len(data) != length or len(footer) != FOOTER_BYTES:
                raise ScenarioError(path, where, f"truncated record at byte {offset}")
            if masked_crc(data) != _U32.unpack_from(footer, 0)[0]:
                raise ScenarioError(path, where, f"data CRC mismatch in the record at byte {offset} (damaged data)")
            yield index, offset, data
            offset += HEADER_BYTES + length + FOOTER_BYTES
            index += 1
