"""
Short excerpts of response bodies for error messages, with every secret masked.

A server that echoes the request (a debugging proxy, a misconfigured gateway) can put the client
secret or the bearer token just sent into the body an error message quotes, and a token endpoint's
answer always carries a token. Both are masked here, before anything is cut, so that no part of a
secret can show.

>>> excerpt(b"<p>Bearer tok-123 refused</p>", secrets=("tok-123",))
"'Bearer *** refused'"
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["excerpt", "token_body_excerpt"]

# A token endpoint's answer carries the access token (and may carry others) in these fields.
_TOKEN_FIELDS = re.compile(r'("(?:access_token|refresh_token|id_token)"\s*:\s*")[^"]*("?)')
# An answer that could not be used may carry a token anywhere else: under another name ("token",
# "accessToken"), form-encoded (access_token=...), or bare. Tokens are long runs of these characters;
# what an error needs to show (field names, token_type, scopes, numbers) is shorter.
_OPAQUE_RUN = re.compile(r"[A-Za-z0-9_.~+/-]{24,}=*")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
# Secrets up to this many bytes that start inside the quoted stretch are masked whole.
_LONGEST_MASKED = 8192


def excerpt(body: bytes, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """
    A short, single-line, quoted excerpt of a response body.

    HTML tags are dropped (gateway error pages) and each of ``secrets`` is replaced by ``***``.

    :param body: the response body as received.
    :param secrets: values that must not show: the connection's secrets and the bearer token sent.
    :param limit: the most characters quoted.
    """
    scanned = limit * 8
    text = body[: scanned + _LONGEST_MASKED].decode("utf-8", errors="replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = text[:scanned]
    if "<" in text and ">" in text:
        text = _TAG.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    if not text:
        return "(empty body)"
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def token_body_excerpt(body: bytes, secrets: Iterable[str] = ()) -> str:
    """
    An :func:`excerpt` of a token endpoint's answer with every token value, wherever it stands, replaced.

    >>> token_body_excerpt(b'{"access_token": "eyJ.abc", "expires_in": "soon"}')
    '\\'{"access_token": "***", "expires_in": "soon"}\\''
    """
    text = body.decode("utf-8", errors="replace")
    redacted = _TOKEN_FIELDS.sub(lambda match: f"{match.group(1)}***{match.group(2)}", text)
    redacted = _OPAQUE_RUN.sub("***", redacted)
    return excerpt(redacted.encode("utf-8"), secrets)
