"""AES-256-GCM with a key ring (rotation without downtime) and HMAC signing helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_FORMAT = 1
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext could not be decrypted: unknown key id, wrong key or tampering."""


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256 keys; the first encrypts, every one decrypts.

    Parsed from ``"kid1:BASE64KEY,kid2:BASE64KEY"`` (32-byte keys, URL-safe or standard
    base64). A ciphertext is ``version || len(kid) || kid || nonce || ciphertext+tag``.
    """

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("the key ring needs at least one key")
        seen: set[str] = set()
        for kid, key in self.keys:
            if not kid or len(kid.encode()) > 255 or ":" in kid or "," in kid:
                raise ValueError("key ids must be 1-255 bytes without ':' or ','")
            if kid in seen:
                raise ValueError(f"duplicate key id {kid!r}")
            if len(key) != 32:
                raise ValueError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
            seen.add(kid)

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse ``kid:base64key[,kid:base64key...]`` (the first one is current)."""
        keys: list[tuple[str, bytes]] = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, b64 = part.partition(":")
            if not sep:
                raise ValueError("each key must be written kid:base64key")
            padded = b64 + "=" * (-len(b64) % 4)
            try:
                raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
            except ValueError as exc:
                raise ValueError(f"key {kid!r} is not valid base64") from exc
            keys.append((kid, raw))
        return cls(tuple(keys))

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64 encoded, for ``TOKEN_ENCRYPTION_KEYS``."""
        return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")

    @property
    def current_key_id(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: str, associated_data: bytes) -> bytes:
        """Encrypt under the current key with a fresh random nonce."""
        kid, key = self.keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), associated_data)
        kid_bytes = kid.encode()
        return bytes([_FORMAT, len(kid_bytes)]) + kid_bytes + nonce + sealed

    def decrypt(self, blob: bytes, associated_data: bytes) -> str:
        """Decrypt with the key named in ``blob``; raise :class:`DecryptionError` on failure."""
        kid = self.key_id_of(blob)
        key = dict(self.keys).get(kid)
        if key is None:
            raise DecryptionError(f"no key with id {kid!r} in the key ring")
        offset = 2 + len(kid.encode())
        nonce, sealed = blob[offset : offset + _NONCE_BYTES], blob[offset + _NONCE_BYTES :]
        try:
            return AESGCM(key).decrypt(nonce, sealed, associated_data).decode()
        except InvalidTag as exc:
            raise DecryptionError(f"ciphertext does not authenticate under key {kid!r}") from exc

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        """The key id a ciphertext was written under."""
        if len(blob) < 2 or blob[0] != _FORMAT:
            raise DecryptionError("not a Codiv ciphertext")
        length = blob[1]
        if len(blob) < 2 + length + _NONCE_BYTES + 16:
            raise DecryptionError("ciphertext is truncated")
        return blob[2 : 2 + length].decode()


def hmac_sha256(secret: bytes, message: bytes) -> str:
    """Hex HMAC-SHA256 of ``message``."""
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def sha256_hex(value: str) -> str:
    """SHA-256 of a string, hex: for looking up high-entropy secrets such as API keys."""
    return hashlib.sha256(value.encode()).hexdigest()
