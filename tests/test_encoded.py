"""Big JSON answers go gzip-compressed to clients that accept it, deflated once per body: the
stream is one any gzip reader takes whole, the answer is the same JSON either way, a body
that changed is never answered from the old one's compression, and a client that does not
accept gzip gets the bytes as they are."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from jobs.caches import BoundedCache
from tests.inprocess import app_client
from web import encoded
from web.encoded import accepts_gzip, deflate_front, gzip_of

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.mark.parametrize("end", [b"", b'"age": 1.5}', b" " * 70_000 + b"}"])
@pytest.mark.parametrize("front", [b"", b'{"a": 1, ', b'{"rows": [' + b'{"x": 12345}, ' * 20_000])
def test_a_kept_front_and_its_own_end_make_one_gzip_stream(front: bytes, end: bytes) -> None:
    stream = gzip_of(front, deflate_front(front), end)
    assert gzip.decompress(stream) == front + end
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)  # what httpx and browsers use
    assert reader.decompress(stream) + reader.flush() == front + end and reader.eof
    assert not reader.unused_data


@pytest.mark.parametrize(("header", "gzip_ok"), [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.5", True), ("x-gzip", True),
    ("GZip", True), ("gzip;q=0", False), ("gzip; q=0.0", False), ("gzip;q=nonsense", False),
    ("deflate", False), ("identity", False), ("", False), (None, False),
    (" " * 2000 + "gzip", False),  # past what is read of the header
])
def test_accept_encoding_is_read_as_the_rfc_says(header: str | None, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


def test_the_symbols_list_goes_gzipped_deflated_once_per_body(
        tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with app_client(tmp_path, database) as web:
        small = web.get("/api/symbols", headers=GZIP)  # no symbols yet: a few bytes, as they are
        assert small.json()["count"] == 0 and "content-encoding" not in small.headers
        answers_gzipped_once_per_body(web, monkeypatch)


def answers_gzipped_once_per_body(web: TestClient[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    deflated: list[int] = []

    def counted(front: bytes) -> tuple[bytes, int]:
        deflated.append(len(front))
        return deflate_front(front)
    monkeypatch.setattr(encoded, "deflate_front", counted)
    # kept by content: an equal body another test answered (on the other database) would hit
    monkeypatch.setattr(encoded, "_DEFLATED", BoundedCache("test.deflated", maxsize=32, ttl=60.0))
    for i in range(12):
        assert web.post("/api/symbols", json={"symbol": f"ENC{i}"}).status_code == 201

    plain = web.get("/api/symbols", headers=IDENTITY)
    assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding"
    assert len(plain.content) > encoded.SMALL
    answers = [web.get("/api/symbols", headers=GZIP) for _ in range(3)]
    for r in answers:
        assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
        assert r.json() == plain.json()
        assert r.num_bytes_downloaded < len(plain.content) / 3
    assert len(deflated) == 1

    # a changed list is a new body: answered from its own compression, never the old one's
    assert web.post("/api/symbols", json={"symbol": "ENCNEW"}).status_code == 201
    after = web.get("/api/symbols", headers=GZIP)
    assert "ENCNEW" in {s["symbol"] for s in after.json()["symbols"]}
    assert len(deflated) == 2
