from airflow_provider_orchestrator_audit.client.tokens import TokenCache


def test_token_is_kept_until_shortly_before_expiry():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    assert cache.get() is None
    cache.store("t1", expires_in=3600)
    now[0] = 3539.0
    assert cache.get() == "t1"
    now[0] = 3540.0  # 60 s margin
    assert cache.get() is None


def test_short_lifetimes_use_a_tenth_as_margin():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.store("t1", expires_in=10)
    now[0] = 8.9
    assert cache.get() == "t1"
    now[0] = 9.0
    assert cache.get() is None


def test_a_rejected_token_is_not_handed_out_again():
    cache = TokenCache()
    cache.store("t1", expires_in=3600)
    assert cache.get(unless="t1") is None
    assert cache.get(unless="older") == "t1"
    assert "t1" not in repr(cache)
