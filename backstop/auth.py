"""JWT bearer auth (HS256): scopes and region prefixes. Also a CLI that prints tokens:

python -m backstop.auth token --sub yibao --scope feeds:medical --regions 441881
"""

from __future__ import annotations

import argparse
import enum
import math
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from sqlalchemy import ColumnElement, false, or_, true

from backstop.db import bind
from backstop.errors import Problem
from backstop.settings import Settings, get_settings

SCOPES = (
    "registry:read",
    "registry:write",
    "registry:pii",
    "feeds:medical",
    "feeds:disaster",
    "feeds:civil_affairs",
    "feeds:education",
    "feeds:read",
    "risk:read",
    "risk:admin",
    "assistance:read",
    "assistance:write",
    "funds:write",
    "notify:read",
    "notify:admin",
    "registry:admin",
    "assistance:admin",
    "feeds:admin",
    "quality:read",
    "quality:write",
    "quality:admin",
    # The insurer (人保公司) verifying department-flagged cases (seed 三(三)3): it completes
    # the tasks handed to it, and no others.
    "assistance:insurer",
    "province:write",
    "province:read",
)

# The scope of each service's operator endpoints (/v1/admin/..., backstop.admin).
ADMIN_SCOPES = {
    "registry": "registry:admin",
    "datasync": "feeds:admin",
    "risk": "risk:admin",
    "assistance": "assistance:admin",
    "notify": "notify:admin",
    "quality": "quality:admin",
}


class Level(enum.IntEnum):
    """Administrative levels of authority (DESIGN.md "Levels of authority"): a region code
    is 6 digits for a county (县), 9 for a town (乡镇), 12 for a village (村)."""

    VILLAGE = 1
    TOWN = 2
    COUNTY = 3

    @classmethod
    def of_prefix(cls, prefix: str) -> Level:
        """The level a region prefix covers: `*` or up to the county code = county."""
        if prefix == "*" or len(prefix) <= 6:
            return cls.COUNTY
        return cls.TOWN if len(prefix) <= 9 else cls.VILLAGE


# A region prefix in a token: `*`, or 2 to 12 digits of a region code.
_REGION_PREFIX = re.compile(r"\*|[0-9]{2,12}")


@dataclass(frozen=True)
class Principal:
    sub: str
    scopes: frozenset[str]
    regions: tuple[str, ...]

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def all_regions(self) -> bool:
        return "*" in self.regions

    @property
    def level(self) -> Level | None:
        """The principal's level: that of its shortest region prefix (None: no regions)."""
        return max((Level.of_prefix(p) for p in self.regions), default=None)

    @property
    def county_level(self) -> bool:
        """A county (or wider) principal: its shortest region prefix is `*` or at most the
        6-digit county code (DESIGN.md "Levels of authority")."""
        return self.level is Level.COUNTY

    def require_level(self, level: Level, act: str) -> None:
        """403 unless the principal acts at `level` or above; `act` names the act."""
        have = self.level
        if have is None or have < level:
            held = have.name.lower() if have else "no"
            raise Problem(
                403, f"{act} needs {level.name.lower()}-level authority; this client has {held}"
            )

    def can_see(self, region_code: str) -> bool:
        return self.all_regions or any(region_code.startswith(p) for p in self.regions)

    def region_clause(self, column: Any) -> ColumnElement[bool]:
        """SQL for "a region code this client may see" (prefix match on `column`)."""
        if self.all_regions:
            return true()
        if not self.regions:
            return false()
        return or_(*[column.startswith(p, autoescape=True) for p in self.regions])

    def region_condition(self, column: str, params: list[Any]) -> str | None:
        """`region_clause` for a statement written as text (`backstop.db.bind`), None
        when the client sees every region. Region prefixes are digits (checked on the
        token), so LIKE needs no escaping."""
        if self.all_regions:
            return None
        return f"{column} LIKE ANY({bind(params, [f'{p}%' for p in self.regions])}::text[])"

    def require_region(self, region_code: str) -> None:
        """403 outside the client's regions: for a region the caller named itself."""
        if not self.can_see(region_code):
            raise Problem(403, f"region {region_code} is outside this client's regions")

    def require_visible(self, region_code: str | None, absent: Problem) -> None:
        """Raise `absent`, the very answer given for a thing that does not exist, when the
        thing (found by id, ID number…) is missing (None) or outside this client's regions:
        a 403 there would tell the caller where a person lives (no region oracle)."""
        if region_code is None or not self.can_see(region_code):
            raise absent


def issue_token(
    settings: Settings,
    *,
    sub: str,
    scopes: list[str] | tuple[str, ...],
    regions: list[str] | tuple[str, ...] = ("*",),
    ttl_s: int = 3600,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "scope": " ".join(scopes),
        "regions": list(regions),
        "iat": now,
        "exp": now + ttl_s,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


# Tokens verified already, until their `exp`: a client sends one token with every request,
# and checking its signature and claims again was 15 % of a GET's CPU. What makes a token
# valid only gets truer with time (nbf, iat, the lifetime bound) except `exp`, which a
# hit checks. Keyed by the token and the settings that judged it (another secret, another
# verdict); refusals are not kept.
_VERIFIED: dict[tuple[str, str, str | None, str | None, int], tuple[Principal, float]] = {}
_VERIFIED_MAX = 10_000


def decode_token(settings: Settings, token: str) -> Principal:
    """The principal of a valid token. `exp` must be a number no further ahead than
    BACKSTOP_JWT_MAX_LIFETIME; `iss`/`aud` must match when configured; every region
    prefix must be `*` or digits of a region code."""
    key = (
        token,
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_max_lifetime_s,
    )
    hit = _VERIFIED.get(key)
    if hit is not None:
        if hit[1] > time.time():
            return hit[0]
        del _VERIFIED[key]  # expired: the full check below says so
    principal, exp = _verify(settings, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        del _VERIFIED[next(iter(_VERIFIED))]  # the oldest
    _VERIFIED[key] = (principal, exp)
    return principal


def _verify(settings: Settings, token: str) -> tuple[Principal, float]:
    required = ["exp", "sub"]
    required += [c for c, v in (("iss", settings.jwt_issuer), ("aud", settings.jwt_audience)) if v]
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            issuer=settings.jwt_issuer or None,
            audience=settings.jwt_audience or None,
            # exp is checked below, after its type: PyJWT takes a numeric string for it.
            options={
                "require": required,
                "verify_aud": bool(settings.jwt_audience),
                "verify_exp": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {exc}") from None
    exp = claims["exp"]
    # The JWT spec says NumericDate: a malformed exp is refused as such, past or future.
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise _unauthorized("invalid token: exp must be a number (seconds since the epoch)")
    if exp <= time.time():
        raise _unauthorized("the token has expired")
    if exp - time.time() > settings.jwt_max_lifetime_s:
        raise _unauthorized(
            f"invalid token: exp is more than {settings.jwt_max_lifetime_s} s ahead"
            " (BACKSTOP_JWT_MAX_LIFETIME)"
        )
    regions = claims.get("regions", [])
    if (
        not isinstance(regions, list)
        or not regions
        or not all(isinstance(r, str) and _REGION_PREFIX.fullmatch(r) for r in regions)
    ):
        raise _unauthorized(
            "invalid token: regions must be a non-empty list of region-code prefixes"
            ' (2 to 12 digits, or "*")'
        )
    principal = Principal(
        sub=str(claims["sub"]),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        regions=tuple(regions),
    )
    return principal, float(exp)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="backstop"'})


def _settings_of(request: Request) -> Settings:
    settings = getattr(request.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


class _Bearer(SecurityBase):
    """The principal of a request's bearer token, holding every one of `scopes` (401
    without a valid token, 403 without a scope): one dependency, where HTTPBearer, the
    token and the scope check were three that FastAPI resolved on every request. OpenAPI
    shows it as HTTPBearer, as before."""

    def __init__(self, scopes: tuple[str, ...] = ()) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "HTTPBearer"
        self.scopes = scopes

    async def __call__(self, request: Request) -> Principal:
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if not token or scheme.lower() != "bearer":
            raise _unauthorized("missing bearer token")
        principal = decode_token(_settings_of(request), token)
        missing = [s for s in self.scopes if not principal.has(s)]
        if missing:
            raise Problem(403, f"missing scope: {' '.join(missing)}")
        return principal


current_principal = _Bearer()
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(*scopes: str) -> Any:
    """A dependency that needs every one of `scopes`:
    `principal: Principal = require("risk:read")` in a route signature."""
    return Depends(_Bearer(scopes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backstop.auth")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("token", help="print a signed token")
    tok.add_argument("--sub", required=True)
    tok.add_argument("--scope", nargs="+", default=[], help="scopes, space- or comma-separated")
    tok.add_argument("--regions", nargs="+", default=["*"])
    tok.add_argument("--ttl", type=int, default=8 * 3600, help="seconds")
    args = parser.parse_args(argv)
    scopes = [s for arg in args.scope for s in arg.replace(",", " ").split()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        parser.error(f"unknown scope(s): {' '.join(unknown)}; known: {' '.join(SCOPES)}")
    regions = [r for arg in args.regions for r in arg.split(",") if r]
    print(issue_token(get_settings(), sub=args.sub, scopes=scopes, regions=regions, ttl_s=args.ttl))


if __name__ == "__main__":
    main()
