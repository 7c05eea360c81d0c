import base64
import re

import pytest

from backup_repository.security.passwords import InvalidHash, encode_password, parse_hash, verify_password
from tests.support import GO_ADMIN_HASH

GO_PHC = "$argon2id$v=19$m=65536,t=1,p=4$znW/HOf8Ctdu+o5+mbTvDA==$ZfUiDivAevOdY6wJabAoAPvc5kXlzlC6H68V6tef5F4="


def test_hash_written_by_the_go_server_verifies():
    assert base64.b64decode(GO_ADMIN_HASH).decode() == GO_PHC
    assert verify_password("admin", GO_ADMIN_HASH)
    assert not verify_password("Admin", GO_ADMIN_HASH)
    assert not verify_password("", GO_ADMIN_HASH)


def test_encoded_form_is_the_go_servers():
    phc = base64.b64decode(encode_password("s3cret")).decode()
    match = re.fullmatch(r"\$argon2id\$v=19\$m=65536,t=1,p=4\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", phc)
    assert match, phc
    salt, digest = match.groups()
    # standard base64 with '=' padding, as the Go server writes it
    assert salt.endswith("==") and len(base64.b64decode(salt)) == 16
    assert digest.endswith("=") and len(base64.b64decode(digest)) == 32


def test_round_trip_and_fresh_salt():
    first, second = encode_password("pw"), encode_password("pw")
    assert first != second
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("pw2", first)


def test_same_salt_gives_the_go_hash():
    salt = base64.b64decode("znW/HOf8Ctdu+o5+mbTvDA==")
    assert encode_password("admin", salt=salt) == GO_ADMIN_HASH


def test_unpadded_phc_and_raw_phc_verify_too():
    assert verify_password("admin", GO_PHC)
    head, salt, digest = GO_PHC.rsplit("$", 2)
    assert verify_password("admin", f"{head}${salt.rstrip('=')}${digest.rstrip('=')}")


@pytest.mark.parametrize("bad", [
    "", "not-base64!", base64.b64encode(b"$bcrypt$whatever").decode(),
    "$argon2id$v=19$m=65536,t=1,p=4$$", "$argon2id$v=16$m=65536,t=1,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
    "$argon2id$v=19$m=99999999999,t=1,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
])
def test_malformed_hashes_are_rejected(bad):
    with pytest.raises(InvalidHash):
        parse_hash(bad)
