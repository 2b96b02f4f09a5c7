"""Weight sync learner -> rollout engines: the channels (registered plug-ins, ``trainer.sync_channel``),
the collective transport they may use, and the payload digest both sides compute. Neither the learner
nor the rollout package is imported here: both import this package (no cycle)."""

import hashlib


def payload_digest(payload: bytes) -> str:
    """sha256 hex of a serialised weight payload (learner and engine compute it on their side)."""
    return hashlib.sha256(payload).hexdigest()
