"""Key ring encryption: rotation, associated data, loud failures."""

from __future__ import annotations

import pytest
from codiv_common.crypto import DecryptionError, KeyRing


def ring(*kids: str) -> tuple[KeyRing, dict[str, str]]:
    keys = {kid: KeyRing.generate_key() for kid in kids}
    return KeyRing.parse(",".join(f"{k}:{v}" for k, v in keys.items())), keys


def test_round_trip_with_associated_data() -> None:
    kr, _ = ring("k1")
    blob = kr.encrypt("secret-token", b"account-1")
    assert b"secret-token" not in blob
    assert kr.decrypt(blob, b"account-1") == "secret-token"
    assert KeyRing.key_id_of(blob) == "k1"


def test_nonce_is_fresh_each_time() -> None:
    kr, _ = ring("k1")
    assert kr.encrypt("x", b"a") != kr.encrypt("x", b"a")


def test_wrong_associated_data_fails_loudly() -> None:
    kr, _ = ring("k1")
    blob = kr.encrypt("secret", b"account-1")
    with pytest.raises(DecryptionError):
        kr.decrypt(blob, b"account-2")


def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old, keys = ring("k1")
    blob = old.encrypt("secret", b"a")
    rotated = KeyRing.parse(f"k2:{KeyRing.generate_key()},k1:{keys['k1']}")
    assert rotated.decrypt(blob, b"a") == "secret"
    assert KeyRing.key_id_of(rotated.encrypt("secret", b"a")) == "k2"


def test_unknown_and_wrong_key_fail() -> None:
    kr, _ = ring("k1")
    blob = kr.encrypt("secret", b"a")
    other, _ = ring("k2")
    with pytest.raises(DecryptionError, match="no key"):
        other.decrypt(blob, b"a")
    impostor = KeyRing.parse(f"k1:{KeyRing.generate_key()}")
    with pytest.raises(DecryptionError, match="does not authenticate"):
        impostor.decrypt(blob, b"a")
    with pytest.raises(DecryptionError):
        kr.decrypt(blob[:10], b"a")


@pytest.mark.parametrize(
    "spec", ["", "k1", "k1:short", f"a:{KeyRing.generate_key()},a:{KeyRing.generate_key()}"]
)
def test_bad_key_ring_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        KeyRing.parse(spec)
