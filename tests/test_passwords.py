"""Agent password hashing."""

from __future__ import annotations

import pytest

from assistant.errors import InvalidInput
from assistant.passwords import hash_password, verify_password


def test_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert hash_password("correct horse battery") != stored  # salted


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$x$8$1$AA==$AA==", "bcrypt$1$2$3$4$5"])
def test_malformed_hashes_never_match(stored: str) -> None:
    assert not verify_password("whatever password", stored)


def test_short_passwords_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 10"):
        hash_password("short")
