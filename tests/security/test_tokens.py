"""§4 of the hardening issue, tokens: `exp` required, numeric and within the configured
lifetime; `iss`/`aud` checked when configured; region prefixes well formed; levels."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from backstop.auth import Level, Principal, decode_token, issue_token
from backstop.errors import Problem
from backstop.settings import Settings

SETTINGS = Settings(BACKSTOP_ENV="test")


def token(settings: Settings = SETTINGS, **claims: Any) -> str:
    base: dict[str, Any] = {"sub": "t", "scope": "registry:read", "regions": ["*"]}
    base["exp"] = int(time.time()) + 600
    return jwt.encode({**base, **claims}, settings.jwt_secret, algorithm="HS256")


def refused(settings: Settings, raw: str) -> str:
    with pytest.raises(Problem) as caught:
        decode_token(settings, raw)
    assert caught.value.status == 401
    return str(caught.value.detail)


def test_a_plain_token_is_accepted() -> None:
    principal = decode_token(SETTINGS, token(regions=["441881"]))
    assert principal.regions == ("441881",) and principal.level is Level.COUNTY


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"exp": None}, "exp"),
        ({"exp": str(int(time.time()) + 600)}, "exp must be a number"),
        ({"exp": True}, "exp"),
        ({"exp": 253402300799}, "BACKSTOP_JWT_MAX_LIFETIME"),  # 9999-12-31
        ({"exp": int(time.time()) - 5}, "expired"),
        ({"regions": [""]}, "regions"),
        ({"regions": []}, "regions"),
        ({"regions": ["4418*"]}, "regions"),
        ({"regions": ["441881", " "]}, "regions"),
        ({"regions": ["4"]}, "regions"),
        ({"regions": ["4418811001010"]}, "regions"),
        ({"regions": "*"}, "regions"),
        ({"regions": [441881]}, "regions"),
    ],
)
def test_malformed_claims_are_refused(claims: dict[str, Any], fragment: str) -> None:
    raw = token(**claims)
    if claims.get("exp", 0) is None:
        payload = jwt.decode(raw, options={"verify_signature": False})
        del payload["exp"]
        raw = jwt.encode(payload, SETTINGS.jwt_secret, algorithm="HS256")
    assert fragment in refused(SETTINGS, raw)


def test_the_maximum_lifetime_is_configurable() -> None:
    short = SETTINGS.model_copy(update={"jwt_max_lifetime_s": 300})
    assert "BACKSTOP_JWT_MAX_LIFETIME" in refused(short, token(exp=int(time.time()) + 600))
    decode_token(short, token(exp=int(time.time()) + 200))


def test_issuer_and_audience_are_checked_when_configured() -> None:
    strict = SETTINGS.model_copy(
        update={"jwt_issuer": "https://idp.county", "jwt_audience": "backstop"}
    )
    good = token(iss="https://idp.county", aud="backstop")
    assert decode_token(strict, good).sub == "t"
    assert decode_token(strict, issue_token(strict, sub="x", scopes=["risk:read"])).sub == "x"
    assert "iss" in refused(strict, token())
    assert "issuer" in refused(strict, token(iss="https://elsewhere", aud="backstop")).lower()
    assert "aud" in refused(strict, token(iss="https://idp.county"))
    assert "audience" in refused(strict, token(iss="https://idp.county", aud="other")).lower()
    # Unconfigured: neither is required.
    assert decode_token(SETTINGS, token()).sub == "t"


@pytest.mark.parametrize(
    ("regions", "level"),
    [
        (("*",), Level.COUNTY),
        (("441881",), Level.COUNTY),
        (("44",), Level.COUNTY),
        (("441881101", "441881102"), Level.TOWN),
        (("4418811",), Level.TOWN),
        (("441881101201",), Level.VILLAGE),
        (("441881101201", "441881102"), Level.TOWN),
    ],
)
def test_a_principals_level_is_that_of_its_shortest_prefix(
    regions: tuple[str, ...], level: Level
) -> None:
    principal = Principal(sub="t", scopes=frozenset(), regions=regions)
    assert principal.level is level
    assert principal.county_level == (level is Level.COUNTY)
    principal.require_level(level, "the act")
    if level is not Level.COUNTY:
        with pytest.raises(Problem) as caught:
            principal.require_level(Level.COUNTY, "县级确认")
        assert caught.value.status == 403 and "county-level" in str(caught.value.detail)


def test_a_verified_token_is_kept_only_until_it_expires() -> None:
    exp = int(time.time()) + 1
    raw = token(exp=exp)
    assert decode_token(SETTINGS, raw).sub == "t"
    assert decode_token(SETTINGS, raw).sub == "t"  # from the verified tokens
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    assert "expired" in refused(SETTINGS, raw)


def test_a_token_verified_under_one_secret_is_not_taken_under_another() -> None:
    raw = token()
    assert decode_token(SETTINGS, raw).sub == "t"
    other = SETTINGS.model_copy(update={"jwt_secret": "another-secret-of-enough-length-0123456"})
    assert "signature" in refused(other, raw).lower()
