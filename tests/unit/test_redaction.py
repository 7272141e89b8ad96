"""Error-message excerpts of response bodies never show a secret, not even part of one."""

import doctest

from airflow_provider_orchestrator_audit.client import redaction
from airflow_provider_orchestrator_audit.client.redaction import excerpt, token_body_excerpt

SECRETS = ("client-secret-xyz",)


def test_connection_secrets_and_the_sent_token_are_masked():
    body = b"<html><pre>client_secret=client-secret-xyz Authorization: Bearer token-abc-123</pre></html>"
    assert excerpt(body, (*SECRETS, "token-abc-123")) == "'client_secret=*** Authorization: Bearer ***'"


def test_a_secret_across_the_cut_is_masked_before_cutting():
    # Only the first 1,600 bytes are quoted; tags dropped from them leave room to show what follows.
    body = b"<i></i>" * 228 + b" token-abc-123 and more"
    assert excerpt(body, (*SECRETS, "token-abc-123")) == "'***'"


def test_long_bodies_are_cut_on_one_line_and_empty_ones_say_so():
    assert excerpt(b"line one\n\n   line two\t" + b"x" * 300) == repr("line one line two " + "x" * 182 + "…")
    assert excerpt(b"  \n ") == "(empty body)"
    assert excerpt(b"<html><body></body></html>") == "(empty body)"
    assert excerpt(b"\xff\xfe broken") == repr("\ufffd\ufffd broken")


def test_token_answers_are_quoted_with_every_token_replaced():
    body = b'{"access_token": "eyJ.abc", "refresh_token":"r-1", "expires_in": "soon", "id_token": "cut-sh'
    assert token_body_excerpt(body, SECRETS) == (
        '\'{"access_token": "***", "refresh_token":"***", "expires_in": "soon", "id_token": "***\''
    )


def test_tokens_under_other_names_or_form_encoded_are_replaced_too():
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    for body, expected in (
        (f'{{"token": "{token}", "token_type": "Bearer"}}', '\'{"token": "***", "token_type": "Bearer"}\''),
        (f'{{"accessToken":"{token}","expiresIn":3600}}', '\'{"accessToken":"***","expiresIn":3600}\''),
        (
            f"access_token={token}&token_type=Bearer&scope=PM.Audit.Read",
            "'access_token=***&token_type=Bearer&scope=PM.Audit.Read'",
        ),
    ):
        quoted = token_body_excerpt(body.encode(), SECRETS)
        assert quoted == expected and "c2lnbmF0dXJl" not in quoted


def test_the_module_examples_hold():
    result = doctest.testmod(redaction)
    assert result.attempted == 2 and result.failed == 0
