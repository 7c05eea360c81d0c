"""How a multipart write (an S3 multipart upload, an Azure block blob) cuts a stream into parts (storage/cloud.py):
pieces never joined, parts that grow so that the store's most parts hold a large backup."""

from backup_repository.storage.cloud import AZURE_BLOCKS, S3_PARTS, _parts

MIB = 1 << 20


def test_parts_hold_the_pieces_as_they_came():
    pieces = [bytes([n]) * (MIB + n) for n in range(12)]
    parts = list(_parts(iter(pieces), lambda number: 5 * MIB))
    assert [length for _, length in parts] == [sum(map(len, pieces[:5])), sum(map(len, pieces[5:10])),
                                               sum(map(len, pieces[10:]))]
    assert [piece for held, _ in parts for piece in held] == pieces
    assert all(held[0] is pieces[index] for (held, _), index in zip(parts, (0, 5, 10)))  # not copied


def test_an_empty_stream_is_one_empty_part():
    assert list(_parts(iter([]), S3_PARTS.size)) == [([], 0)]


def test_parts_grow_with_their_number():
    sizes = [size for _, size in _parts(iter([b"x"] * 40), lambda number: number)]
    assert sizes == [1, 2, 3, 4, 5, 6, 7, 8, 4]


def test_ten_thousand_s3_parts_hold_a_large_backup():
    """5 MiB parts alone ended an upload at 48.8 GiB (S3's 10,000th part); the first 4.9 GiB still go in 5 MiB."""
    assert S3_PARTS.most == 10_000
    assert S3_PARTS.size(1) == S3_PARTS.size(1000) == 5 * MIB
    assert S3_PARTS.size(1001) == 10 * MIB
    assert max(S3_PARTS.size(n) for n in range(1, S3_PARTS.most + 1)) == 64 * MIB
    assert 440 << 30 < S3_PARTS.capacity < 450 << 30


def test_fifty_thousand_azure_blocks_hold_a_large_backup():
    """libcloud's 4 MiB blocks ended a blob at 195 GiB (Azure's 50,000th block); the service takes 100 MiB."""
    assert AZURE_BLOCKS.most == 50_000
    assert AZURE_BLOCKS.size(1) == AZURE_BLOCKS.size(5000) == 4 * MIB
    assert AZURE_BLOCKS.size(5001) == 8 * MIB
    assert max(AZURE_BLOCKS.size(n) for n in range(1, AZURE_BLOCKS.most + 1)) <= 100 * MIB
    assert AZURE_BLOCKS.capacity > 2 << 40
