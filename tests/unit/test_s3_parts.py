"""How an S3 multipart upload cuts a stream into parts (storage/cloud.py): pieces never joined, parts that grow so
that S3's 10,000 parts hold a large backup."""

from backup_repository.storage.cloud import MAX_PART_SIZE, MAX_PARTS, PART_SIZE, _parts, part_size

MIB = 1 << 20


def test_parts_hold_the_pieces_as_they_came():
    pieces = [bytes([n]) * (MIB + n) for n in range(12)]
    parts = list(_parts(iter(pieces), lambda number: 5 * MIB))
    assert [length for _, length in parts] == [sum(map(len, pieces[:5])), sum(map(len, pieces[5:10])),
                                               sum(map(len, pieces[10:]))]
    assert [piece for held, _ in parts for piece in held] == pieces
    assert all(held[0] is pieces[index] for (held, _), index in zip(parts, (0, 5, 10)))  # not copied


def test_an_empty_stream_is_one_empty_part():
    assert list(_parts(iter([]))) == [([], 0)]


def test_parts_grow_with_their_number():
    sizes = [size for _, size in _parts(iter([b"x"] * 40), lambda number: number)]
    assert sizes == [1, 2, 3, 4, 5, 6, 7, 8, 4]


def test_ten_thousand_parts_hold_a_large_backup():
    """5 MiB parts alone ended an upload at 48.8 GiB (S3's 10,000th part); the first 4.9 GiB still go in 5 MiB."""
    assert part_size(1) == part_size(1000) == PART_SIZE
    assert part_size(1001) == 2 * PART_SIZE
    assert max(part_size(n) for n in range(1, MAX_PARTS + 1)) == MAX_PART_SIZE
    assert sum(part_size(n) for n in range(1, MAX_PARTS + 1)) > 400 << 30
