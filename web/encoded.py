"""Big JSON answers, gzip-compressed for the clients that accept it (browsers, httpx, requests
and curl --compressed all do), compressed once per body, not once per request.

An answer is a fixed front, the same bytes object for as long as what it says is unchanged
(the stored contracts snapshot, the symbols list), and a short end of its own (the snapshot's
age and build job). The front is deflated once, ending on a byte boundary (a full flush), and
kept; each answer appends its end as a stored deflate block and the gzip trailer (CRC-32
continued from the front's, and the length). The result is one ordinary gzip stream.

Why not a compression middleware: it would deflate the 302 KiB snapshot on every request
(milliseconds of CPU each), where the answer's tail is set by the bytes on the wire
(bench/contracts.py, both ways).
"""

from __future__ import annotations

import asyncio
import struct
import zlib

from litestar import Request, Response
from litestar.enums import MediaType

from jobs.caches import BoundedCache

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
SMALL = 1024  # bytes: below this the answer goes as it is (gzip's overhead would eat the gain)
IN_THREAD = 64 * 1024  # a front this big is deflated off the event loop
MAX_ACCEPT = 1024  # characters of Accept-Encoding looked at
VARY = {"Vary": "Accept-Encoding"}

# front -> (its raw deflate, full-flushed; its CRC-32). Keyed by the bytes themselves: a front
# kept by its owner is the same object each time, whose hash Python computes once. An entry
# never goes wrong (same bytes, same deflate); the age limit only lets memory go.
_DEFLATED: BoundedCache[bytes, tuple[bytes, int]] = BoundedCache("web.deflated", maxsize=32, ttl=3600.0)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip``, ``x-gzip``, without q=0)."""
    if not accept_encoding:
        return False
    for item in accept_encoding[:MAX_ACCEPT].lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() not in ("gzip", "x-gzip"):
            continue
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def deflate_front(front: bytes) -> tuple[bytes, int]:
    """``front`` as raw deflate ending on a byte boundary (no final block), and its CRC-32."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(front) + compressor.flush(zlib.Z_FULL_FLUSH), zlib.crc32(front)


def gzip_of(front: bytes, deflated: tuple[bytes, int], end: bytes) -> bytes:
    """The gzip stream of ``front + end`` from the front's kept deflate: ``end`` goes in stored
    blocks (no compression: it is a few hundred bytes), the last one final."""
    body, crc = deflated
    blocks = []
    rest = memoryview(end)
    while True:
        chunk, rest = rest[:0xFFFF], rest[0xFFFF:]
        final = not rest
        blocks.append(struct.pack("<BHH", 1 if final else 0, len(chunk), len(chunk) ^ 0xFFFF))
        blocks.append(bytes(chunk))
        if final:
            break
    size = (len(front) + len(end)) & 0xFFFFFFFF
    return b"".join((GZIP_HEADER, body, *blocks, struct.pack("<II", zlib.crc32(end, crc), size)))


async def json_answer(request: Request, front: bytes, end: bytes = b"") -> Response[bytes]:
    """``front + end`` as a JSON answer, gzip-compressed when the client accepts it."""
    if len(front) + len(end) < SMALL or not accepts_gzip(request.headers.get("accept-encoding")):
        return Response(front + end, media_type=MediaType.JSON, headers=VARY)
    deflated = _DEFLATED.get(front)
    if deflated is None:
        if len(front) >= IN_THREAD:
            deflated = await asyncio.to_thread(deflate_front, front)
        else:
            deflated = deflate_front(front)
        _DEFLATED.set(front, deflated)
    return Response(gzip_of(front, deflated, end), media_type=MediaType.JSON,
                    headers={**VARY, "Content-Encoding": "gzip"})
