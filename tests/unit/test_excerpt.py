"""Error-message excerpts of response bodies never show a secret, not even part of one."""

from airflow_provider_orchestrator_audit.client.exchanges import _token_body_excerpt, excerpt
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings

SETTINGS = ConnectionSettings(
    conn_id="c", base_url="https://o.example", organization="acme", client_id="id", client_secret="client-secret-xyz"
)


def test_connection_secrets_and_the_sent_token_are_masked():
    body = b"<html><pre>client_secret=client-secret-xyz Authorization: Bearer token-abc-123</pre></html>"
    assert excerpt(body, SETTINGS, ("token-abc-123",)) == "'client_secret=*** Authorization: Bearer ***'"


def test_a_secret_across_the_cut_is_masked_before_cutting():
    # Only the first 1,600 bytes are quoted; tags dropped from them leave room to show what follows.
    body = b"<i></i>" * 228 + b" token-abc-123 and more"
    assert excerpt(body, SETTINGS, ("token-abc-123",)) == "'***'"


def test_token_answers_are_quoted_with_every_token_replaced():
    body = b'{"access_token": "eyJ.abc", "refresh_token":"r-1", "expires_in": "soon", "id_token": "cut-sh'
    assert _token_body_excerpt(body, SETTINGS) == (
        '\'{"access_token": "***", "refresh_token":"***", "expires_in": "soon", "id_token": "***\''
    )


def test_tokens_under_other_names_or_form_encoded_are_replaced_too():
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    for body, expected in (
        (f'{{"token": "{token}", "token_type": "Bearer"}}', '\'{"token": "***", "token_type": "Bearer"}\''),
        (f'{{"accessToken":"{token}","expiresIn":3600}}', '\'{"accessToken":"***","expiresIn":3600}\''),
        (f"access_token={token}&token_type=Bearer&scope=PM.Audit.Read", "'access_token=***&token_type=Bearer&scope=PM.Audit.Read'"),
    ):
        quoted = _token_body_excerpt(body.encode(), SETTINGS)
        assert quoted == expected and "c2lnbmF0dXJl" not in quoted
