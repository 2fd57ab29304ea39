"""Signed, expiring attachment URLs (Discord's `ex`/`is`/`hm` scheme) and their checks.

Discord signs CDN URLs and refuses them after expiry; fetching the message again returns a
fresh URL. We sign with an HMAC key kept in the database so URLs survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

DEFAULT_TTL = 24 * 3600.0


class Signer:
    def __init__(self, key: bytes, ttl: float = DEFAULT_TTL) -> None:
        self.key = key
        self.ttl = ttl

    def _mac(self, path: str, ex: str, issued: str) -> str:
        return hmac.new(self.key, f"{path}|{ex}|{issued}".encode(), hashlib.sha256).hexdigest()

    def url(self, base: str, channel_id: int, attachment_id: int, filename: str) -> str:
        path = f"/attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        now = time.time()
        issued = f"{int(now):x}"
        ex = f"{int(now + self.ttl):x}"
        return f"{base}{path}?ex={ex}&is={issued}&hm={self._mac(path, ex, issued)}&"

    def check(self, path: str, ex: str | None, issued: str | None, hm: str | None) -> int:
        """200 if valid; 404 if unsigned or expired (no longer available); 403 if forged."""
        if not ex or not issued or not hm:
            return 404
        if not hmac.compare_digest(self._mac(path, ex, issued), hm):
            return 403
        try:
            expires = int(ex, 16)
        except ValueError:
            return 403
        if time.time() >= expires:
            return 404
        return 200
