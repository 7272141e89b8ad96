"""
The errors for answers that end a request, each saying what to check.

A refusal by the identity server names its OAuth error code (RFC 6749, section 5.2) and a refusal
by the audit API its ``error`` field or ``WWW-Authenticate`` error (RFC 6750, section 3); each code
is turned into the setting most likely at fault.
"""

from __future__ import annotations

import re

import httpx

from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import OrchestratorAuthError, OrchestratorResponseError

__all__ = ["api_refused", "bad_body_error", "token_answer_advice", "token_refused"]


def bad_body_error(
    settings: ConnectionSettings,
    where: str,
    reply: httpx.Response,
    problem: str,
    *,
    body: str,
    attempts: int = 1,
    advice: str | None = None,
) -> OrchestratorResponseError:
    """
    The error for an HTTP 200 whose body is not the documented response.

    :param problem: what is wrong with the body, e.g. ``totalCount: Field required``.
    :param body: the excerpt to quote, secrets already masked.
    :param attempts: answers that came back so; more than one means the body stayed broken.
    :param advice: what to check; by default, where the answers come from.
    """
    times = f" on each of {attempts} attempts" if attempts > 1 else ""
    if advice is None and attempts > 1:
        advice = (
            f"Check that Host ({settings.base_url}) reaches Orchestrator itself, not a proxy, firewall or "
            "sign-in page; if it does, the service keeps sending broken answers: try again later or report it "
            "to UiPath"
        )
    elif advice is None:
        advice = (
            f"Check that Host ({settings.base_url}) and extra 'organization' ({settings.organization!r}) name an "
            "Orchestrator deployment and that nothing in between rewrites its answers; if they do, the service "
            "answered in an undocumented form: report this message to UiPath"
        )
    return OrchestratorResponseError(
        f"Connection {settings.conn_id!r}: {where} returned HTTP {reply.status_code}{times} with a body that is "
        f"not the documented response ({problem}). Body starts: {body}. {advice}."
    )


def token_answer_advice(settings: ConnectionSettings) -> str:
    """What to check when the token endpoint's answer is not a token grant."""
    return (
        f"Check that the token URL ({settings.token_url}) is the identity server's token endpoint "
        "(set extra 'token_url' for a standalone Orchestrator) and that nothing in between rewrites its answers"
    )


def token_refused(
    settings: ConnectionSettings, reply: httpx.Response, scope: str | None = None
) -> OrchestratorAuthError:
    """
    The error for a token request the identity server refused (400 or 401 with an OAuth error code).

    :param scope: the scopes asked for; the connection's when None.
    """
    scope = scope or settings.scope
    code, description = _oauth_error(reply)
    where = f"the identity server at {settings.token_url}"
    if code == "invalid_client":
        advice = "check the connection's Login (client id) and Password (client secret) of the external application"
    elif code == "invalid_scope":
        wanted = "OR.Audit.Read (or OR.Audit)" if scope.startswith("OR.") else "PM.Audit.Read (or PM.Audit)"
        advice = (
            f"the external application is not allowed scope {scope!r}: add the Orchestrator API "
            f"scope {wanted} to it, or change the connection's extra 'scope'"
        )
    elif code == "unauthorized_client":
        advice = "the external application may not use the client-credentials grant; make it a confidential application"
    else:
        advice = "check the connection's credentials and extra 'token_url'"
    detail = f" ({description})" if description else ""
    return OrchestratorAuthError(
        f"Connection {settings.conn_id!r}: {where} refused the token request with HTTP {reply.status_code}, "
        f"error {code or 'unknown'}{detail}: {advice}."
    )


def api_refused(
    settings: ConnectionSettings, where: str, reply: httpx.Response, sent: tuple[str, ...] = ()
) -> OrchestratorAuthError:
    """
    The error for a 403, or a 401 that a fresh token (or the personal access token) did not cure.

    :param sent: the bearer token sent: masked, like the connection's secrets, in what the server said.
    """
    code, _ = _oauth_error(reply)
    code = code or _www_authenticate_error(reply) or "none given"
    for secret in (*settings.secrets, *sent):
        if secret:
            code = code.replace(secret, "***")
    code = code[:100]
    if reply.status_code == 403:
        advice = (
            "the credentials lack permission to read audit logs: grant the external application the scope "
            f"PM.Audit.Read (asked for: {settings.scope!r}), or give the token's user the Audit View permission"
        )
    elif settings.uses_personal_access_token:
        advice = "the personal access token in extra 'access_token' is expired, revoked or for another organization"
    else:
        advice = (
            f"a fresh token from {settings.token_url} was refused too: check that Host, extra 'organization' and "
            "extra 'token_url' belong to the same Orchestrator deployment"
        )
    return OrchestratorAuthError(
        f"Connection {settings.conn_id!r}: {where} answered HTTP {reply.status_code} (error code: {code}): {advice}."
    )


def _oauth_error(reply: httpx.Response) -> tuple[str | None, str | None]:
    try:
        document = reply.json()
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    code, description = document.get("error"), document.get("error_description")
    return (str(code) if code else None), (str(description)[:200] if description else None)


def _www_authenticate_error(reply: httpx.Response) -> str | None:
    match = re.search(r'error="([^"]+)"', reply.headers.get("WWW-Authenticate", ""))
    return match.group(1) if match else None
