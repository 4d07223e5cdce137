"""Out-of-line payloads: a blob above the store's inline limit is kept once, by its digest.

A row (history event, inbox message, an instance's input, output, custom status or failure)
then holds a reference: ``REF_PREFIX`` and the SHA-256 of the blob, 36 bytes. The blob sits
in the ``payloads`` table under ``(hub, instance_id, digest)``: written in the transaction
that writes its first reference, deleted with the instance (purge) or with the execution
that used it (continue-as-new). Every read gives back the blob as it was written.

No stored blob of ours starts with ``REF_PREFIX`` (events start with ``RDH``, pickles with
0x80); one that does is kept out of line whatever its size, so an inline blob that starts
with the prefix is always a reference.
"""

from __future__ import annotations

import hashlib

#: The inline limit of a store that was not given one (``HubConfig.payload_inline_limit``).
DEFAULT_INLINE_LIMIT = 64 * 1024
#: What a reference starts with; the digest follows.
REF_PREFIX = b"RDP\x01"
REF_LENGTH = len(REF_PREFIX) + hashlib.sha256().digest_size


def needs_outline(blob: bytes, limit: int) -> bool:
    """True if ``blob`` goes to the payloads table rather than into its row."""
    return len(blob) > limit or blob.startswith(REF_PREFIX)


def digest_of(blob: bytes) -> bytes:
    """The key of ``blob`` in the payloads table."""
    return hashlib.sha256(blob).digest()


def reference(digest: bytes) -> bytes:
    """What the row holds in place of the blob with ``digest``."""
    return REF_PREFIX + digest


def referenced(blob: bytes | None) -> bytes | None:
    """The digest a stored value refers to, or None for a value stored inline."""
    if blob is not None and len(blob) == REF_LENGTH and blob.startswith(REF_PREFIX):
        return bytes(blob[len(REF_PREFIX) :])
    return None
