"""Admin token, per-session CSRF tokens and the security headers every response carries.

The studio binds to loopback by default, but a browser on the same machine can still be tricked into sending
requests to it (CSRF, DNS rebinding), so every admin request needs the admin token (a cookie set from the
one-time ``?token=`` link printed at start, or the ``X-Admin-Token`` header), every POST needs the CSRF token
of its session (an HMAC of the session's identity under a per-process secret, sent in ``X-CSRF-Token``), and
every response forbids inline script, framing and MIME sniffing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request

ADMIN_COOKIE = "rx_admin"
ADMIN_HEADER = "x-admin-token"
CSRF_HEADER = "x-csrf-token"

#: No inline script or style; images only from this origin (the overlays are PNGs served by id).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: The served static report: its own inline styles and data-URI figures, and no script at all.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # rater links carry their token in the path: never leak it to another site
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class Auth:
    """The server's admin token and the secret its CSRF tokens are derived from.

    Args:
        admin_token: The admin token (a fresh ``secrets.token_urlsafe(24)`` when ``None``).
    """

    def __init__(self, admin_token: str | None = None) -> None:
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self._secret = secrets.token_bytes(32)

    def csrf_token(self, identity: str) -> str:
        """The CSRF token of a session (``"admin"`` or ``"rater:<tok>"``), unguessable without the secret."""
        return hmac.new(self._secret, identity.encode(), hashlib.sha256).hexdigest()

    def is_admin_token(self, token: str | None) -> bool:
        """Whether ``token`` is the admin token (constant-time comparison)."""
        return bool(token) and secrets.compare_digest(str(token).encode(), self.admin_token.encode())

    def is_admin(self, request: Request) -> bool:
        """Whether the request carries the admin token in its cookie or header."""
        return self.is_admin_token(request.cookies.get(ADMIN_COOKIE)) or self.is_admin_token(
            request.headers.get(ADMIN_HEADER)
        )

    def require_admin(self, request: Request) -> None:
        """Refuse (401) a request without the admin token."""
        if not self.is_admin(request):
            raise HTTPException(
                status_code=401,
                detail="admin token required: open the link printed by `robustxai serve` (…/?token=…)",
            )

    def check_csrf(self, request: Request, identity: str) -> None:
        """Refuse (403) a POST whose ``X-CSRF-Token`` header is not its session's token."""
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), self.csrf_token(identity).encode()):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token: reload the page")
