"""The cached access token of one client."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenCache"]


class TokenCache:
    """
    Holds one bearer token until shortly before it expires.

    The margin is a tenth of the lifetime, at most 60 seconds: a request that starts just before
    expiry must not carry a token that dies in flight, and short test lifetimes must still be usable.
    Not locked itself: the drivers serialise access (a thread lock or an asyncio lock) so that
    concurrent requests share one token request.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:  # never show the token itself
        state = "empty" if self._token is None else f"valid for {self._refresh_at - self._clock():.0f}s"
        return f"<TokenCache {state}>"

    def get(self, unless: str | None = None) -> str | None:
        """The cached token if still fresh and not the one named in ``unless`` (rejected by the server)."""
        if self._token is None or self._token == unless or self._clock() >= self._refresh_at:
            return None
        return self._token

    def store(self, token: str, expires_in: float) -> None:
        """Keep ``token``, valid for ``expires_in`` seconds from now."""
        margin = min(60.0, expires_in / 10)
        self._token = token
        self._refresh_at = self._clock() + expires_in - margin

    def clear(self) -> None:
        """Forget the token."""
        self._token = None
