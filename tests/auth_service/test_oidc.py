"""Single sign-on: the ID token's checks against forged tokens, and the callback's guards.

A small OpenID provider of our own runs on a real socket: discovery, a JWKS with the
provider's key, and a token endpoint that checks the client's secret and the PKCE
verifier and hands out whatever ID token the test forged. The whole flow against a
real provider (panva's oidc-provider) in a browser is tests/e2e/test_sso.py.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask, abort, jsonify, request

from auth_service import db
from auth_service.config import Config, OIDCConfig
from auth_service.oidc import OIDCError, Provider, ProviderUnavailable
from auth_service.oidc_views import STATE_COOKIE
from common.errors import ConfigError
from common.tokens import jwk_thumbprint, public_jwk
from tests.auth_service.conftest import LiveServer
from tests.support import forge

CLIENT_ID = "video2mp3"
CLIENT_SECRET = "provider-issued secret"
PUBLIC_URL = "http://video2mp3.test"
EMAIL = "ada@example.com"


@dataclasses.dataclass
class FakeProvider:
    """What the test provider serves, and what its token endpoint was asked."""

    key: RSAPrivateKey
    issuer: str = ""
    # Called with the authorization request's nonce; returns the ID token to hand out.
    id_token: Callable[[str], str] | None = None
    challenges: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    token_requests: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def app(self) -> Flask:
        """Return the provider's HTTP face."""
        app = Flask("fake_provider")

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=f"{self.issuer}/authorize",
                token_endpoint=f"{self.issuer}/token",
                jwks_uri=f"{self.issuer}/jwks",
                id_token_signing_alg_values_supported=["RS256"],
                token_endpoint_auth_methods_supported=["client_secret_basic"],
            )

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(keys=[public_jwk(self.key.public_key())])

        @app.post("/token")
        def token() -> Any:
            form = request.form.to_dict()
            self.token_requests.append(form)
            auth = request.authorization
            # RFC 6749 §2.3.1: the id and secret are form-encoded inside the Basic header.
            credentials = auth and (unquote_plus(auth.username), unquote_plus(auth.password))
            if credentials != (CLIENT_ID, CLIENT_SECRET):
                return jsonify(error="invalid_client"), 401
            challenge, nonce = self.challenges.pop(form.get("code", ""), ("", ""))
            verifier = form.get("code_verifier", "")
            if not challenge or s256(verifier) != challenge:
                return jsonify(error="invalid_grant"), 400
            assert self.id_token is not None
            return jsonify(access_token="at", token_type="Bearer", id_token=self.id_token(nonce))

        @app.get("/authorize")
        def authorize() -> Any:
            abort(404)  # browsers never come here in these tests

        return app

    def grant(self, authorization_url: str) -> str:
        """Log in at the provider for the request in ``authorization_url``; return the code."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        assert query["code_challenge_method"] == "S256"
        code = f"code-{len(self.challenges)}-{time.monotonic_ns()}"
        self.challenges[code] = (query["code_challenge"], query["nonce"])
        return code

    def claims(self, nonce: str, /, **changes: Any) -> dict[str, Any]:
        """Return an ID token's valid claims; a change to None drops that claim."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "provider-subject-1",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "email": EMAIL,
            "email_verified": True,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` as the provider does."""
        return forge.sign(self.key, claims)


def s256(verifier: str) -> str:
    """Return the PKCE S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def provider_key() -> RSAPrivateKey:
    """Return the provider's signing key."""
    return forge.new_rsa_key()


@pytest.fixture
def fake_provider(
    serve: Callable[[Flask], LiveServer], provider_key: RSAPrivateKey
) -> FakeProvider:
    """Serve a fake OpenID provider over HTTP."""
    fake = FakeProvider(provider_key)
    fake.issuer = serve(fake.app()).base_url
    return fake


@pytest.fixture
def oidc_config(fake_provider: FakeProvider) -> OIDCConfig:
    """Return single sign-on settings for the fake provider, example.com addresses only."""
    return OIDCConfig(
        issuer=fake_provider.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        allowed_domains=frozenset({"example.com"}),
        public_url=PUBLIC_URL,
    )


# --- the ID token's checks ------------------------------------------------------------

NONCE = "the nonce of this login"


def _forged(fake: FakeProvider, other_key: RSAPrivateKey, case: str) -> str:
    claims = fake.claims(NONCE)
    kid = jwk_thumbprint(fake.key.public_key())
    now = int(time.time())
    forgeries: dict[str, Callable[[], str]] = {
        "wrong nonce": lambda: fake.sign({**claims, "nonce": "another login's nonce"}),
        "no nonce": lambda: fake.sign(fake.claims(NONCE, nonce=None)),
        "wrong audience": lambda: fake.sign({**claims, "aud": "someone-else"}),
        "several audiences, no azp": lambda: fake.sign({**claims, "aud": [CLIENT_ID, "other"]}),
        "azp of another client": lambda: fake.sign({**claims, "azp": "other"}),
        "wrong issuer": lambda: fake.sign({**claims, "iss": "https://evil.example"}),
        "signed by another key, provider's kid": lambda: jwt.encode(
            claims, other_key, algorithm="RS256", headers={"kid": kid}
        ),
        "signed by another key, its own kid": lambda: forge.sign(other_key, claims),
        "alg none": lambda: forge.unsigned(claims),
        "HS256 keyed with the public key": lambda: forge.hs256(
            claims, forge.public_pem(fake.key), kid=kid
        ),
        "tampered payload": lambda: forge.tampered(fake.sign(claims), email="eve@example.com"),
        "expired": lambda: fake.sign({**claims, "iat": now - 600, "exp": now - 120}),
        "issued long ago": lambda: fake.sign({**claims, "iat": now - 3600, "exp": now + 60}),
        "no exp": lambda: fake.sign(fake.claims(NONCE, exp=None)),
        "no iat": lambda: fake.sign(fake.claims(NONCE, iat=None)),
        "not a JWT": lambda: "not.a.jwt",
    }
    return forgeries[case]()


@pytest.mark.parametrize(
    "case",
    [
        "wrong nonce",
        "no nonce",
        "wrong audience",
        "several audiences, no azp",
        "azp of another client",
        "wrong issuer",
        "signed by another key, provider's kid",
        "signed by another key, its own kid",
        "alg none",
        "HS256 keyed with the public key",
        "tampered payload",
        "expired",
        "issued long ago",
        "no exp",
        "no iat",
        "not a JWT",
    ],
)
def test_forged_id_tokens_are_refused(
    fake_provider: FakeProvider, oidc_config: OIDCConfig, other_key: RSAPrivateKey, case: str
) -> None:
    provider = Provider(oidc_config)
    with pytest.raises(OIDCError) as refused:
        provider.verify_id_token(_forged(fake_provider, other_key, case), nonce=NONCE)
    assert refused.value.code == "invalid_id_token"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"email_verified": False}, "email_not_verified"),
        ({"email_verified": None}, "email_not_verified"),
        ({"email_verified": "yes"}, "email_not_verified"),
        ({"email": None}, "email_not_verified"),
        ({"email": "not an address"}, "email_not_verified"),
        ({"email": "mallory@evil.example"}, "domain_not_allowed"),
        # A look-alike: the allowed domain as a subdomain of another is another domain.
        ({"email": "mallory@example.com.evil.example"}, "domain_not_allowed"),
        ({"email": "mallory@sub.example.com"}, "domain_not_allowed"),
    ],
)
def test_unusable_addresses_are_refused(
    fake_provider: FakeProvider, oidc_config: OIDCConfig, changes: dict[str, Any], code: str
) -> None:
    provider = Provider(oidc_config)
    token = fake_provider.sign(fake_provider.claims(NONCE, **changes))
    with pytest.raises(OIDCError) as refused:
        provider.verify_id_token(token, nonce=NONCE)
    assert refused.value.code == code


def test_a_good_id_token_gives_the_normalized_address(
    fake_provider: FakeProvider, oidc_config: OIDCConfig
) -> None:
    provider = Provider(oidc_config)
    claims = fake_provider.claims(NONCE, email="  Ada@Example.COM", azp=CLIENT_ID)
    identity = provider.verify_id_token(fake_provider.sign(claims), nonce=NONCE)
    assert identity.email == EMAIL
    assert identity.subject == "provider-subject-1"


def test_any_domain_is_allowed_when_none_are_listed(
    fake_provider: FakeProvider, oidc_config: OIDCConfig
) -> None:
    provider = Provider(dataclasses.replace(oidc_config, allowed_domains=frozenset()))
    token = fake_provider.sign(fake_provider.claims(NONCE, email="bob@elsewhere.example"))
    assert provider.verify_id_token(token, nonce=NONCE).email == "bob@elsewhere.example"


def test_a_rotated_key_is_fetched_when_a_token_names_it(
    fake_provider: FakeProvider, oidc_config: OIDCConfig, other_key: RSAPrivateKey
) -> None:
    provider = Provider(oidc_config)
    assert provider.verify_id_token(fake_provider.sign(fake_provider.claims(NONCE)), nonce=NONCE)
    fake_provider.key = other_key
    # The first fetch is still fresh: an unknown kid refetches only after a pause.
    rotated = fake_provider.sign(fake_provider.claims(NONCE))
    with pytest.raises(OIDCError):
        provider.verify_id_token(rotated, nonce=NONCE)
    provider._keys_at -= 61  # as if a minute had passed
    assert provider.verify_id_token(rotated, nonce=NONCE).email == EMAIL


def test_discovery_must_name_the_configured_issuer(
    fake_provider: FakeProvider, oidc_config: OIDCConfig
) -> None:
    # The same server under another name: a document about someone else.
    other_name = fake_provider.issuer.replace("127.0.0.1", "localhost")
    provider = Provider(dataclasses.replace(oidc_config, issuer=other_name))
    with pytest.raises(ProviderUnavailable, match="names issuer"):
        provider.metadata()


# --- the routes -----------------------------------------------------------------------


@pytest.fixture
def sso_server(
    make_app: Callable[..., Flask],
    serve: Callable[[Flask], LiveServer],
    oidc_config: OIDCConfig,
) -> LiveServer:
    """Serve the auth service with single sign-on through the fake provider."""
    return serve(make_app(oidc=oidc_config))


@dataclasses.dataclass
class Started:
    """A sign-on that left for the provider: its authorization URL and state cookie."""

    url: str
    state: str
    cookie: str


def _start(server: LiveServer) -> Started:
    response = server.get("/login/oidc", allow_redirects=False)
    assert response.status_code == 302, response.text
    assert response.headers["Cache-Control"] == "no-store"
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    # Each callback says which cookie it brings; the client's jar keeps none.
    server.http.cookies.clear()
    return Started(response.headers["Location"], query["state"][0], response.cookies[STATE_COOKIE])


def _callback(server: LiveServer, cookie: str | None, **params: str) -> str:
    cookies = {STATE_COOKIE: cookie} if cookie is not None else {}
    response = server.get(
        "/login/oidc/callback", params=params, cookies=cookies, allow_redirects=False
    )
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(f"{PUBLIC_URL}/#")
    return urlsplit(location).fragment


def _login(server: LiveServer, fake: FakeProvider) -> str:
    started = _start(server)
    fake.id_token = lambda nonce: fake.sign(fake.claims(nonce))
    return _callback(server, started.cookie, code=fake.grant(started.url), state=started.state)


def test_config_says_whether_single_sign_on_is_on(
    sso_server: LiveServer, live_server: LiveServer
) -> None:
    assert sso_server.get("/login/oidc/config").json() == {"enabled": True, "name": "127.0.0.1"}
    assert live_server.get("/login/oidc/config").json() == {"enabled": False, "name": None}
    off = live_server.get("/login/oidc", allow_redirects=False)
    assert off.status_code == 302
    assert off.headers["Location"] == "http://127.0.0.1:8000/#login_error=sso_disabled"


def test_the_authorization_request_carries_pkce_state_and_nonce(sso_server: LiveServer) -> None:
    started = _start(sso_server)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{PUBLIC_URL}/login/oidc/callback"
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43
    assert query["state"] == started.state


def test_a_login_creates_the_user_once_and_issues_our_token(
    app: Flask, sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    fragment = _login(sso_server, fake_provider)
    assert fragment.startswith("login=")
    claims = _our_claims(app, fragment.removeprefix("login="))
    assert claims["sub"] == EMAIL
    assert claims["admin"] is False
    # The token request proved the verifier and the client's secret (checked by the fake).
    (token_request,) = fake_provider.token_requests
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["redirect_uri"] == f"{PUBLIC_URL}/login/oidc/callback"
    with app.app_context():
        first = db.find_user(EMAIL)
    assert _login(sso_server, fake_provider).startswith("login=")
    with app.app_context():
        second = db.find_user(EMAIL)
    assert first is not None
    assert second is not None
    assert first.id == second.id


def _our_claims(app: Flask, token: str) -> dict[str, Any]:
    config: Config = app.extensions["auth_service.config"]
    return jwt.decode(
        token,
        config.jwt_private_key.public_key(),
        algorithms=["RS256"],
        audience=config.jwt_audience,
        issuer=config.jwt_issuer,
    )


def test_a_replayed_callback_is_refused(
    sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    started = _start(sso_server)
    fake_provider.id_token = lambda nonce: fake_provider.sign(fake_provider.claims(nonce))
    params = {"code": fake_provider.grant(started.url), "state": started.state}
    assert _callback(sso_server, started.cookie, **params).startswith("login=")
    assert _callback(sso_server, started.cookie, **params) == "login_error=invalid_state"
    # The replay never reached the provider.
    assert len(fake_provider.token_requests) == 1


@pytest.mark.parametrize("cookie", [None, "another browser's state"])
def test_a_callback_from_another_browser_is_refused(
    sso_server: LiveServer, fake_provider: FakeProvider, cookie: str | None
) -> None:
    started = _start(sso_server)
    fake_provider.id_token = lambda nonce: fake_provider.sign(fake_provider.claims(nonce))
    fragment = _callback(
        sso_server, cookie, code=fake_provider.grant(started.url), state=started.state
    )
    assert fragment == "login_error=invalid_state"
    assert fake_provider.token_requests == []


def test_a_stale_login_is_refused(
    app: Flask, sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    started = _start(sso_server)
    with app.app_context(), db.get_db().cursor() as cursor:
        cursor.execute(
            "UPDATE oidc_logins SET created_at = UTC_TIMESTAMP() - INTERVAL 11 MINUTE "
            "WHERE state = %s",
            (started.state,),
        )
    fake_provider.id_token = lambda nonce: fake_provider.sign(fake_provider.claims(nonce))
    fragment = _callback(
        sso_server, started.cookie, code=fake_provider.grant(started.url), state=started.state
    )
    assert fragment == "login_error=invalid_state"


def test_a_forged_id_token_logs_no_one_in(
    app: Flask, sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    started = _start(sso_server)
    fake_provider.id_token = lambda nonce: fake_provider.sign(
        fake_provider.claims("another login's nonce")
    )
    fragment = _callback(
        sso_server, started.cookie, code=fake_provider.grant(started.url), state=started.state
    )
    assert fragment == "login_error=invalid_id_token"
    with app.app_context():
        assert db.find_user(EMAIL) is None


def test_a_disallowed_domain_lands_with_its_error(
    app: Flask, sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    started = _start(sso_server)
    fake_provider.id_token = lambda nonce: fake_provider.sign(
        fake_provider.claims(nonce, email="eve@evil.example")
    )
    fragment = _callback(
        sso_server, started.cookie, code=fake_provider.grant(started.url), state=started.state
    )
    assert fragment == "login_error=domain_not_allowed"
    with app.app_context():
        assert db.find_user("eve@evil.example") is None


def test_the_provider_refusing_is_passed_on(
    sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    started = _start(sso_server)
    fragment = _callback(sso_server, started.cookie, error="access_denied", state=started.state)
    assert fragment == "login_error=access_denied"
    assert fake_provider.token_requests == []


def test_a_wrong_code_verifier_is_refused_by_the_provider(
    sso_server: LiveServer, fake_provider: FakeProvider
) -> None:
    first, second = _start(sso_server), _start(sso_server)
    fake_provider.id_token = lambda nonce: fake_provider.sign(fake_provider.claims(nonce))
    # The code was issued for the first login's challenge; the second's verifier fails it.
    fragment = _callback(
        sso_server, second.cookie, code=fake_provider.grant(first.url), state=second.state
    )
    assert fragment == "login_error=code_rejected"


def test_a_disabled_user_does_not_get_in(
    app: Flask, sso_server: LiveServer, fake_provider: FakeProvider, make_user: Callable[..., Any]
) -> None:
    user = make_user(EMAIL)
    with app.app_context(), db.get_db().cursor() as cursor:
        cursor.execute("UPDATE users SET disabled = TRUE WHERE id = %s", (user.id,))
    assert _login(sso_server, fake_provider) == "login_error=account_disabled"


def test_an_unreachable_provider_sends_the_browser_back_with_an_error(
    make_app: Callable[..., Flask], serve: Callable[[Flask], LiveServer], oidc_config: OIDCConfig
) -> None:
    # A port nothing listens on: the closed one of a server that stopped.
    stopped = LiveServer(Flask("gone"))
    stopped.stop()
    server = serve(make_app(oidc=dataclasses.replace(oidc_config, issuer=stopped.base_url)))
    response = server.get("/login/oidc", allow_redirects=False)
    assert response.headers["Location"] == f"{PUBLIC_URL}/#login_error=unavailable"


# --- settings -------------------------------------------------------------------------


def test_settings_are_read_once_from_the_environment() -> None:
    config = OIDCConfig.from_env(
        {
            "OIDC_ISSUER": "https://id.example.com/realms/staff",
            "OIDC_CLIENT_ID": "video2mp3",
            "OIDC_CLIENT_SECRET": "s3cret",
            "OIDC_ALLOWED_DOMAINS": " Example.com, @staff.example.org ,",
            "PUBLIC_URL": "https://v2m.example.com/",
        }
    )
    assert config.enabled
    assert config.allowed_domains == {"example.com", "staff.example.org"}
    assert config.scopes == "openid email profile"
    assert config.redirect_uri == "https://v2m.example.com/login/oidc/callback"
    assert "s3cret" not in repr(config)
    assert not OIDCConfig.from_env({}).enabled


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"OIDC_ISSUER": "https://id.example.com", "OIDC_CLIENT_ID": "x"}, "OIDC_CLIENT_SECRET"),
        (
            {"OIDC_ISSUER": "id.example.com", "OIDC_CLIENT_ID": "x", "OIDC_CLIENT_SECRET": "y"},
            "URL",
        ),
        (
            {
                "OIDC_ISSUER": "https://id.example.com",
                "OIDC_CLIENT_ID": "x",
                "OIDC_CLIENT_SECRET": "y",
                "OIDC_SCOPES": "email",
            },
            "openid",
        ),
    ],
)
def test_incomplete_settings_stop_the_start(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        OIDCConfig.from_env(environ)


def test_production_refuses_a_placeholder_client_secret(key_file) -> None:
    environ = {
        "APP_ENV": "production",
        "JWT_PRIVATE_KEY_FILE": str(key_file),
        "MYSQL_PASSWORD": "a real one",
        "OIDC_ISSUER": "https://id.example.com",
        "OIDC_CLIENT_ID": "video2mp3",
        "OIDC_CLIENT_SECRET": "changeme",
    }
    with pytest.raises(ConfigError, match="OIDC_CLIENT_SECRET"):
        Config.from_env(environ)
