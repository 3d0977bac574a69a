"""Seeds for the dialogue-engine tests (tests/conversations/engine.yaml)."""

from __future__ import annotations

from datetime import datetime, timezone

from store.models import Follower
from tests.seeds import seed


@seed
def engine_known_phone(session):
    """A follower whose phone is on file: the demo form offers it as the default."""
    session.add(Follower(openid="o_eng_default", subscribed=True, phone="13912345678",
                         subscribed_at=datetime(2026, 1, 5, tzinfo=timezone.utc)))
