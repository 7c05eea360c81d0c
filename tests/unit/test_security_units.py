"""Rate-limit buckets, client addresses behind proxies, and constant-time comparisons."""

import asyncio
import hashlib
import hmac
import ipaddress

import pytest

from backup_repository.security.addresses import client_address
from backup_repository.security.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_token_bucket_refills_at_its_rate():
    clock = Clock()
    limiter = RateLimiter(limit=3, period=60.0, clock=clock)
    assert [limiter.hit("a").retry_after for _ in range(3)] == [None, None, None]
    retry = limiter.hit("a").retry_after
    assert retry == pytest.approx(20.0, abs=0.01)  # one token every 20 s
    assert limiter.hit("b").allowed  # another address has its own bucket
    clock.now += 20.0
    assert limiter.hit("a").allowed
    assert not limiter.hit("a").allowed


def test_a_budget_says_what_is_left_and_when_it_is_full_again():
    clock = Clock()
    limiter = RateLimiter(limit=3, period=60.0, clock=clock)
    first = limiter.hit("a")
    assert (first.limit, first.remaining, first.full_in) == (3, 2, pytest.approx(20.0))
    assert [limiter.hit("a").remaining for _ in range(2)] == [1, 0]
    refused = limiter.hit("a")
    assert (refused.remaining, refused.full_in, refused.allowed) == (0, pytest.approx(60.0), False)
    clock.now += 30.0  # a token and a half back: one whole request
    again = limiter.hit("a")
    assert (again.remaining, again.full_in) == (0, pytest.approx(50.0))


def test_the_table_is_bounded_under_a_flood_of_addresses():
    clock = Clock()
    limiter = RateLimiter(limit=5, period=1.0, max_entries=1000, clock=clock)
    for index in range(100_000):
        limiter.hit(str(ipaddress.ip_address(index + 1)))
    assert len(limiter) == 1000
    # the most recent addresses are the ones kept
    assert limiter.hit(str(ipaddress.ip_address(100_000))).allowed


TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"),
           ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize("peer, headers, expected", [
    ("203.0.113.9", {"X-Forwarded-For": "1.2.3.4"}, "203.0.113.9"),          # untrusted peer: headers ignored
    ("203.0.113.9", {"X-Real-IP": "1.2.3.4"}, "203.0.113.9"),
    ("127.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, "1.2.3.4"),
    ("127.0.0.1", {"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"),  # right-most untrusted hop
    ("127.0.0.1", {"X-Forwarded-For": "10.0.0.3, 10.0.0.2"}, "10.0.0.3"),      # all trusted: the farthest
    ("127.0.0.1", {"X-Forwarded-For": "garbage, 10.0.0.2"}, "10.0.0.2"),       # garbage: the last hop we know
    ("127.0.0.1", {"X-Forwarded-For": "1.2.3.4:5678"}, "1.2.3.4"),
    ("127.0.0.1", {"X-Forwarded-For": "[2001:db8::1]:443"}, "2001:db8::1"),
    ("127.0.0.1", {"X-Real-IP": "2001:db8::7"}, "2001:db8::7"),
    ("127.0.0.1", {"X-Real-IP": "nonsense"}, "127.0.0.1"),
    ("127.0.0.1", {}, "127.0.0.1"),
    ("::ffff:127.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, "1.2.3.4"),          # IPv4-mapped peer
    ("fd00::1", {"X-Forwarded-For": "2001:db8::9"}, "2001:db8::9"),
])
def test_client_address(peer, headers, expected):
    assert client_address(peer, headers, TRUSTED) == expected


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_address("127.0.0.1", {"X-Forwarded-For": "1.2.3.4"}, ()) == "127.0.0.1"


def test_codes_are_compared_in_constant_time(monkeypatch):
    """Health codes and the health-check key go through hmac.compare_digest (a plain == would leak timing)."""
    from backup_repository.domain.collections import Collection
    from backup_repository.services import collections as service_module

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service_module.hmac, "compare_digest", spy)

    class Config:
        def collection(self, _):
            return Collection("c", max_backups_count=1, max_one_version_size=1, max_collection_size=1,
                              health_code_sha256=hashlib.sha256(b"code").hexdigest())

    class Versions:
        async def of_collection(self, _):
            return []

    class Integrity:
        async def problems(self, _):
            return []

    class Deletions:
        async def refused(self, _):
            return {}

    class Db:
        versions, integrity, deletions = Versions(), Integrity(), Deletions()

    service = service_module.CollectionService(Config(), Db(), storage=object())
    asyncio.run(service.health("c", "code"))
    assert calls and calls[-1] == (hashlib.sha256(b"code").hexdigest(),) * 2

    from backup_repository.http import health as health_module

    source = open(health_module.__file__).read()
    assert "hmac.compare_digest(code.encode(), expected.encode())" in source


def test_password_digests_are_compared_in_constant_time(monkeypatch):
    from backup_repository.security import passwords

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(passwords.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    encoded = passwords.encode_password("right")
    assert passwords.verify_password("right", encoded) and not passwords.verify_password("wrong", encoded)
    assert len(calls) == 2


def test_the_budget_key_of_an_address():
    from backup_repository.security.ratelimit import budget_key

    assert budget_key("2001:db8:1:2::19") == budget_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert budget_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert budget_key("2001:db8:1:2::19", 48) == "2001:db8:1::/48"
    assert budget_key("2001:db8::1", 128) == "2001:db8::1/128"
    assert budget_key("198.51.100.7") == "198.51.100.7"
    assert budget_key("::ffff:198.51.100.7") == "198.51.100.7"  # IPv4-mapped: the IPv4 address
    assert budget_key("fe80::1%eth0") == "fe80::/64"
    assert budget_key("not an address") == "not an address"
