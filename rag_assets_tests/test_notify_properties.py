"""Properties of watch tokens and webhook signatures (lib.notifications), over generated
tenants, key ids, expiries and bodies: what is made verifies, and no change to it does."""

from __future__ import annotations

import pytest

from rag_assets.lib.keys import is_valid_tenant
from rag_assets.lib.notifications import (
    TokenRefused,
    WebhookRefused,
    parse_duration,
    read_watch_token,
    sign_webhook,
    token_id,
    verify_watch_token,
    verify_webhook,
    watch_token,
)

hypothesis = pytest.importorskip("hypothesis")  # the test extras have it
given, st = hypothesis.given, hypothesis.strategies

SECRET = "property-secret"
NOW = 1_700_000_000
tenants = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,40}", fullmatch=True).filter(is_valid_tenant)
key_ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
lifetimes = st.integers(min_value=1, max_value=400 * 86_400)
secrets = st.text(min_size=1, max_size=40)


@given(tenants, key_ids, lifetimes, secrets)
def test_a_token_verifies_for_its_tenant_until_it_expires(tenant, key_id, lifetime, secret):
    made = watch_token(secret, tenant, NOW + lifetime, key_id)
    granted = verify_watch_token(secret, made, tenant, NOW + lifetime - 1, key_id)
    assert (granted.tenant, granted.key_id, granted.expires, granted.id) == (
        tenant,
        key_id,
        NOW + lifetime,
        token_id(made),
    )
    assert read_watch_token(made)[0] == granted
    with pytest.raises(TokenRefused, match="expired"):
        verify_watch_token(secret, made, tenant, NOW + lifetime, key_id)


@given(tenants, tenants)
def test_a_token_lets_its_holder_hear_its_own_tenant_only(tenant, other):
    made = watch_token(SECRET, tenant, NOW + 60)
    if other != tenant:
        with pytest.raises(TokenRefused, match="is for tenant"):
            verify_watch_token(SECRET, made, other, NOW)


@given(tenants, lifetimes, st.data())
def test_no_change_to_a_token_is_accepted(tenant, lifetime, data):
    made = watch_token(SECRET, tenant, NOW + lifetime)
    at = data.draw(st.integers(min_value=0, max_value=len(made) - 1))
    char = data.draw(st.characters(codec="ascii").filter(lambda c: c != made[at]))
    changed = made[:at] + char + made[at + 1 :]
    with pytest.raises(TokenRefused):
        verify_watch_token(SECRET, changed, read_or(changed, tenant), NOW)


def read_or(token: str, tenant: str) -> str:
    """The tenant a changed token claims, if it still parses (so the refusal is its signature's)."""
    try:
        return read_watch_token(token)[0].tenant
    except TokenRefused:
        return tenant


@given(tenants, secrets, secrets)
def test_a_token_made_with_another_secret_is_forged(tenant, secret, other):
    if secret != other:
        with pytest.raises(TokenRefused, match="forged"):
            verify_watch_token(other, watch_token(secret, tenant, NOW + 60), tenant, NOW)


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=2**33), st.integers(min_value=-300, max_value=300))
def test_a_webhook_signature_verifies_within_the_window(body, timestamp, skew):
    assert verify_webhook(SECRET, sign_webhook(SECRET, body, timestamp), body, timestamp + skew) == timestamp


@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(min_value=0, max_value=2**33))
def test_a_webhook_signature_holds_for_its_own_body_only(body, other, timestamp):
    if other != body:
        with pytest.raises(WebhookRefused, match="does not match"):
            verify_webhook(SECRET, sign_webhook(SECRET, body, timestamp), other, timestamp)


@given(st.binary(max_size=100), st.integers(min_value=301, max_value=10**6))
def test_a_replay_after_the_window_is_refused(body, late):
    with pytest.raises(WebhookRefused, match="window"):
        verify_webhook(SECRET, sign_webhook(SECRET, body, NOW), body, NOW + late)


@given(st.integers(min_value=1, max_value=366), st.sampled_from(["s", "m", "h", "d"]))
def test_durations_count_seconds(number, unit):
    seconds = number * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[unit]
    assert parse_duration(f"{number}{unit}") == seconds
