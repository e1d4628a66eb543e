"""Signed checkpoints: Ed25519 over (origin, sequence, head hash, time), kept outside the store.

The private key lives in a file the operator controls, never in the database. A checkpoint is
a small JSON document; auditors keep the latest one they saw and verify the log against it,
which is what makes a deleted tail or a rewritten suffix detectable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from paywarden.audit.canonical import canonical_bytes
from paywarden.audit.chain import Checkpoint
from paywarden.errors import PaywardenError

CHECKPOINT_DOMAIN = b"paywarden.checkpoint.v1\n"


class CheckpointError(PaywardenError):
    """A checkpoint or key that cannot be read, or whose signature does not verify."""

    code = "checkpoint_invalid"


class SigningKeyMissingError(CheckpointError):
    """A checkpoint was asked for, but no audit signing key is configured."""

    code = "audit_signing_key_missing"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    key_id: str
    signature: str  # base64

    def to_dict(self) -> dict[str, object]:
        return {
            "origin": self.checkpoint.origin,
            "seq": self.checkpoint.seq,
            "head_hash": self.checkpoint.head_hash,
            "time_us": self.checkpoint.time_us,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"


def _message(checkpoint: Checkpoint) -> bytes:
    fields = {
        "origin": checkpoint.origin,
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head_hash,
        "time_us": checkpoint.time_us,
    }
    return CHECKPOINT_DOMAIN + canonical_bytes(fields)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (private key mode 0600); refuse to overwrite."""
    if private_path.exists() or public_path.exists():
        raise CheckpointError(f"refusing to overwrite `{private_path}` or `{public_path}`")
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_path.write_bytes(public_pem)
    return key_id(private_key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot read signing key `{path}`: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"`{path}` is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot read public key `{path}`: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"`{path}` is not an Ed25519 public key")
    return key


def sign(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> SignedCheckpoint:
    signature = private_key.sign(_message(checkpoint))
    return SignedCheckpoint(
        checkpoint, key_id(private_key.public_key()), base64.b64encode(signature).decode("ascii")
    )


def parse(text: str) -> SignedCheckpoint:
    try:
        data = json.loads(text)
        checkpoint = Checkpoint(
            origin=str(data["origin"]),
            seq=int(data["seq"]),
            head_hash=str(data["head_hash"]),
            time_us=int(data["time_us"]),
        )
        return SignedCheckpoint(checkpoint, str(data["key_id"]), str(data["signature"]))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"malformed checkpoint: {error}") from None


def check_signature(signed: SignedCheckpoint, public_key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint if its signature verifies under `public_key`, else CheckpointError."""
    if signed.key_id != key_id(public_key):
        raise CheckpointError(
            f"checkpoint was signed by `{signed.key_id}`, not by the trusted key "
            f"`{key_id(public_key)}`"
        )
    try:
        public_key.verify(
            base64.b64decode(signed.signature, validate=True), _message(signed.checkpoint)
        )
    except (InvalidSignature, ValueError):
        raise CheckpointError("checkpoint signature does not verify") from None
    return signed.checkpoint


def write_checkpoint(directory: Path, signed: SignedCheckpoint) -> Path:
    """Write atomically as `checkpoint-<seq>.json` (write, fsync, rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"checkpoint-{signed.checkpoint.seq:012d}.json"
    temporary = target.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(signed.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return target


def latest_checkpoint(directory: Path) -> Path | None:
    files = sorted(directory.glob("checkpoint-*.json"))
    return files[-1] if files else None
