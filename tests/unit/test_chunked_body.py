"""The chunked body decoder of http/connection.py: any split of the wire gives back the body, malformed framing is
refused as Tornado refused it, and tiny chunks are refused before they cost more than FREE_CHUNKS steps."""

import os
import random

import pytest
from tornado.httputil import HTTPInputError

from backup_repository.domain.errors import BadRequest
from backup_repository.http.connection import FREE_CHUNKS, MIN_CHUNK_AVERAGE, TINY_CHUNKS, ChunkedBody

PIECE = 1 << 20


def encode(body: bytes, sizes) -> bytes:
    out, position = [], 0
    for size in sizes:
        if position >= len(body):
            break
        piece = body[position:position + size]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        position += len(piece)
    return b"".join(out) + b"0\r\n\r\n"


def decode(wire: bytes, reads, piece: int = PIECE):
    """(body, decoder) after feeding ``wire`` in reads of the given sizes (the last one takes the rest)."""
    decoder, out, position = ChunkedBody(piece, 1 << 62), [], 0
    for size in reads:
        if decoder.done or position >= len(wire):
            break
        out += decoder.feed(wire[position:position + size])
        position += size
    if not decoder.done:
        out += decoder.feed(wire[position:])
    return b"".join(out), decoder


@pytest.mark.parametrize("seed", range(6))
def test_any_split_of_the_wire_gives_the_body_back(seed):
    rng = random.Random(seed)
    body = os.urandom(rng.randrange(1, 300_000))
    wire = encode(body, iter(lambda: rng.randrange(MIN_CHUNK_AVERAGE, 70_000), None))
    reads = iter(lambda: rng.randrange(1, 5000), None)
    piece = rng.choice([1000, 65536, PIECE])
    decoded, decoder = decode(wire, reads, piece=piece)
    assert decoded == body and decoder.done and decoder.extra == 0
    # pieces are handed on once they reach ``piece`` octets: never more than that plus one read
    decoder, position = ChunkedBody(piece, 1 << 62), 0
    for size in iter(lambda: rng.randrange(1, 5000), None):
        assert all(len(p) < piece + 5000 for p in decoder.feed(wire[position:position + size]))
        position += size
        if position >= len(wire):
            break
    assert decoder.done


def test_every_split_point_of_a_small_body():
    body = os.urandom(3000)
    wire = encode(body, [1000, 1500, 500])
    for cut in range(1, len(wire)):
        decoded, decoder = decode(wire, [cut])
        assert decoded == body and decoder.done, cut


def test_the_body_is_handed_on_in_large_pieces():
    body = os.urandom(3 * PIECE + 5)
    decoder = ChunkedBody(PIECE, 1 << 62)
    pieces = decoder.feed(encode(body, [4096] * 10_000))
    assert b"".join(pieces) == body
    assert [len(p) for p in pieces[:3]] == [PIECE] * 3  # 768 chunks of 4 KiB each, joined


def test_an_empty_body():
    decoded, decoder = decode(b"0\r\n\r\n", [1])
    assert decoded == b"" and decoder.done and decoder.chunks == 0


def test_what_follows_the_end_is_counted_not_read_as_body():
    wire = encode(b"x" * 1000, [1000]) + b"GET /health HTTP/1.1\r\n\r\n"
    decoded, decoder = decode(wire, [len(wire)])
    assert decoded == b"x" * 1000 and decoder.extra == len(b"GET /health HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize("wire, message", [
    (b"zz\r\nab\r\n0\r\n\r\n", "invalid chunk size"),
    (b"0x2\r\nab\r\n0\r\n\r\n", "invalid chunk size"),
    (b" 2\r\nab\r\n0\r\n\r\n", "invalid chunk size"),
    (b"2;ext=1\r\nab\r\n0\r\n\r\n", "invalid chunk size"),  # Tornado has never accepted extensions
    (b"1" * 70, "invalid chunk size"),
    (b"2\r\nabXY0\r\n\r\n", "improperly terminated chunk"),
    (b"2\r\nab\r\n0\r\nTrailer: x\r\n\r\n", "improperly terminated chunked request"),
])
def test_malformed_framing_is_refused(wire, message):
    for reads in ([len(wire)], [1] * len(wire)):
        with pytest.raises(HTTPInputError, match=message):
            decode(wire, reads)


def test_a_body_larger_than_the_limit_is_refused():
    decoder = ChunkedBody(PIECE, 100)
    with pytest.raises(HTTPInputError, match="too large"):
        decoder.feed(encode(b"x" * 101, [101]))


def test_tiny_chunks_are_refused_after_the_free_ones():
    wire = encode(b"x" * 65536, [1] * 65536)
    decoder = ChunkedBody(PIECE, 1 << 62)
    with pytest.raises(BadRequest) as refused:
        decoder.feed(wire)
    assert refused.value.message == TINY_CHUNKS
    assert decoder.chunks == FREE_CHUNKS + 1  # refused at the first chunk past the free ones, not at the end


def test_chunks_of_the_minimum_average_pass_and_a_big_first_chunk_buys_small_ones():
    body = os.urandom(MIN_CHUNK_AVERAGE * 5000)
    assert decode(encode(body, [MIN_CHUNK_AVERAGE] * 5000), [PIECE])[0] == body
    # one large chunk, then as many 1-octet chunks as its size allows: the average holds
    big = MIN_CHUNK_AVERAGE * 1000
    small = 1000 - 2
    body = os.urandom(big + small)
    assert decode(encode(body, [big] + [1] * small), [PIECE])[0] == body
    with pytest.raises(BadRequest):
        decode(encode(body + b"x" * 10, [big] + [1] * (small + 10)), [PIECE])
