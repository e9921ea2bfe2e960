"""OpenID Connect, the relying party's side: the only module that talks to the provider.

Discovery (``<issuer>/.well-known/openid-configuration``), the authorization request
with a PKCE S256 challenge, the code exchange, and every check an ID token must pass
before its email address is believed: the signature by a key of the provider's JWKS
with the algorithm pinned to an asymmetric one that discovery lists, ``iss``, ``aud``,
``azp``, ``exp``, ``iat``, ``nonce``, ``email_verified`` and the allowed domains.
Signatures are PyJWT's; documents are fetched with ``requests`` under timeouts and a
size bound, and cached (discovery and keys for an hour; the keys again when a token
names one we do not have, at most once a minute).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jwt
import requests
from flask import Flask, current_app

from auth_service.config import OIDCConfig
from auth_service.credentials import InvalidField, normalize_email, validate_email
from auth_service.db import OIDC_LOGIN_MINUTES
from common.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

_EXTENSION = "auth_service.oidc"
# Connect and read timeouts for every call to the provider.
HTTP_TIMEOUT = (3.0, 10.0)
# Discovery documents, key sets and token answers are a few kilobytes.
MAX_DOCUMENT_BYTES = 1024 * 1024
METADATA_TTL_SECONDS = 3600
# A token naming an unknown key fetches the key set again, but no more often than this.
JWKS_REFETCH_SECONDS = 60
CLOCK_SKEW_SECONDS = 60
# Only public-key signatures: an HMAC "signed" with a public key proves nothing.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# What a provider supports when its discovery document does not say (OIDC Discovery §3).
DEFAULT_ID_TOKEN_ALGORITHMS = ("RS256",)
DEFAULT_TOKEN_AUTH_METHODS = ("client_secret_basic",)


class OIDCError(PermanentError):
    """A single sign-on that must not log anyone in; ``code`` tells the page why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProviderUnavailable(TransientError):
    """The OpenID provider could not be reached or answered nonsense."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The secrets of one sign-on: ``state`` and ``nonce`` bind it, the verifier proves it."""

    state: str
    nonce: str
    code_verifier: str

    @property
    def code_challenge(self) -> str:
        """Return the PKCE S256 challenge of the verifier (RFC 7636 §4.2)."""
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_attempt() -> Attempt:
    """Return fresh random secrets for one sign-on (256 bits each; a 64-char verifier)."""
    return Attempt(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(48),
    )


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What discovery says about the provider."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_algorithms: frozenset[str]
    token_auth_methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the provider vouches for: a verified email address in an allowed domain."""

    email: str
    subject: str


class Provider:
    """One OpenID provider, as configured by ``OIDC_*``."""

    def __init__(self, config: OIDCConfig, *, http: requests.Session | None = None) -> None:
        if config.issuer is None:
            raise ValueError("single sign-on is not configured")
        self._config = config
        self._issuer = config.issuer
        self._http = http or requests.Session()
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: list[dict[str, Any]] = []
        self._keys_at = float("-inf")

    @property
    def name(self) -> str:
        """Return the name the login button shows: configured, or the issuer's host."""
        return self._config.provider_name or urlsplit(self._issuer).hostname or self._issuer

    def metadata(self) -> ProviderMetadata:
        """Return the provider's discovery document, fetched at most once an hour.

        Raises:
            ProviderUnavailable: it cannot be fetched or is not a valid document.
        """
        with self._lock:
            if (
                self._metadata is None
                or time.monotonic() - self._metadata_at > METADATA_TTL_SECONDS
            ):
                self._metadata = self._discover()
                self._metadata_at = time.monotonic()
            return self._metadata

    def _discover(self) -> ProviderMetadata:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url)
        try:
            # OIDC Discovery §4.3: the document must name exactly the issuer we asked.
            if document["issuer"] != self._issuer:
                raise ProviderUnavailable(
                    f"{url} names issuer {document['issuer']!r}, not {self._issuer!r}"
                )
            endpoints = {
                name: _http_url(document[name])
                for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            }
            algorithms = document.get(
                "id_token_signing_alg_values_supported", DEFAULT_ID_TOKEN_ALGORITHMS
            )
            methods = document.get(
                "token_endpoint_auth_methods_supported", DEFAULT_TOKEN_AUTH_METHODS
            )
            return ProviderMetadata(
                issuer=document["issuer"],
                id_token_algorithms=frozenset(map(str, algorithms)) & ASYMMETRIC_ALGORITHMS,
                token_auth_methods=tuple(map(str, methods)),
                **endpoints,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailable(f"{url} is no OpenID discovery document: {exc!r}") from None

    def authorization_url(self, attempt: Attempt) -> str:
        """Return where to send the browser to log in at the provider.

        Raises:
            ProviderUnavailable: discovery failed.
        """
        endpoint = self.metadata().authorization_endpoint
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._config.client_id,
                "redirect_uri": self._config.redirect_uri,
                "scope": self._config.scopes,
                "state": attempt.state,
                "nonce": attempt.nonce,
                "code_challenge": attempt.code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{query}"

    def exchange_code(self, code: str, code_verifier: str) -> str:
        """Trade an authorization code for the provider's tokens; return the ID token.

        Raises:
            OIDCError: the provider refused the code (``code_rejected``) or sent no ID token.
            ProviderUnavailable: the provider cannot be reached or failed.
        """
        metadata = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_uri,
            "code_verifier": code_verifier,
        }
        auth: tuple[str, str] | None = None
        if "client_secret_basic" in metadata.token_auth_methods:
            # RFC 6749 §2.3.1: both halves are form-encoded before Basic encoding.
            auth = (
                quote(self._config.client_id, safe=""),
                quote(self._config.client_secret, safe=""),
            )
        elif "client_secret_post" in metadata.token_auth_methods:
            form |= {
                "client_id": self._config.client_id,
                "client_secret": self._config.client_secret,
            }
        else:
            raise ProviderUnavailable(
                "the provider accepts neither client_secret_basic nor client_secret_post: "
                f"{', '.join(metadata.token_auth_methods)}"
            )
        status, body = self._request("POST", metadata.token_endpoint, data=form, auth=auth)
        if status >= 500:
            raise ProviderUnavailable(f"{metadata.token_endpoint} answered {status}")
        answer = _json_object(body, metadata.token_endpoint)
        if status != 200:
            error = str(answer.get("error", status))[:100]
            raise OIDCError("code_rejected", f"the provider refused the code: {error}")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise OIDCError("invalid_id_token", "the provider's token answer has no ID token")
        return id_token

    def verify_id_token(self, id_token: str, *, nonce: str, now: float | None = None) -> Identity:
        """Check every claim of ``id_token`` and return the verified identity it carries.

        Raises:
            OIDCError: ``invalid_id_token`` for a bad signature or claim,
                ``email_not_verified`` or ``domain_not_allowed`` for an unusable address.
            ProviderUnavailable: the provider's keys cannot be fetched.
        """
        metadata = self.metadata()
        claims = self._verified_claims(id_token, metadata, now=time.time() if now is None else now)
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise _invalid("its nonce is not this login's")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        # OIDC Core §3.1.3.7: several audiences need azp; azp, when given, must be us.
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != self._config.client_id:
            raise _invalid("it was issued to another party (azp)")
        return Identity(email=self._allowed_email(claims), subject=str(claims["sub"]))

    def _verified_claims(
        self, id_token: str, metadata: ProviderMetadata, *, now: float
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise _invalid(f"it is no JWT ({exc})") from None
        algorithm = header.get("alg")
        if algorithm not in metadata.id_token_algorithms:
            raise _invalid(f"it is signed with {algorithm!r}, not an algorithm the provider lists")
        key = self._signing_key(metadata.jwks_uri, header.get("kid"), algorithm)
        try:
            claims = jwt.decode(
                id_token,
                key=key.key,
                algorithms=[algorithm],
                audience=self._config.client_id,
                issuer=metadata.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise _invalid(str(exc)) from None
        # The provider signed it while this login was under way, not long ago.
        if not isinstance(claims["iat"], int | float) or (
            now - claims["iat"] > OIDC_LOGIN_MINUTES * 60 + CLOCK_SKEW_SECONDS
        ):
            raise _invalid("it was issued too long ago")
        return claims

    def _allowed_email(self, claims: dict[str, Any]) -> str:
        # Some providers (Cognito) send the flag as a string.
        if claims.get("email_verified") not in (True, "true"):
            raise OIDCError("email_not_verified", "the provider has not verified this address")
        try:
            email = validate_email(normalize_email(str(claims.get("email", ""))))
        except InvalidField:
            raise OIDCError("email_not_verified", "the provider sent no usable email") from None
        domain = email.rpartition("@")[2].lower()
        allowed = self._config.allowed_domains
        if allowed and domain not in allowed:
            raise OIDCError("domain_not_allowed", f"addresses at {domain} may not log in here")
        return email

    def _signing_key(self, jwks_uri: str, kid: object, algorithm: str) -> jwt.PyJWK:
        with self._lock:
            key = _pick_key(self._keys, kid, algorithm)
            age = time.monotonic() - self._keys_at
            if (key is None and age > JWKS_REFETCH_SECONDS) or age > METADATA_TTL_SECONDS:
                self._keys = self._fetch_keys(jwks_uri)
                self._keys_at = time.monotonic()
                key = _pick_key(self._keys, kid, algorithm)
        if key is None:
            raise _invalid(f"no key of the provider's matches its kid {kid!r} and {algorithm}")
        return key

    def _fetch_keys(self, url: str) -> list[dict[str, Any]]:
        document = self._get_json(url)
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ProviderUnavailable(f"{url} is no JSON Web Key Set")
        return [k for k in keys if isinstance(k, dict)]

    def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """Return the status and (bounded) body of the provider's answer."""
        try:
            with self._http.request(
                method, url, timeout=HTTP_TIMEOUT, allow_redirects=False, stream=True, **kwargs
            ) as response:
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ProviderUnavailable(
                            f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes"
                        )
                return response.status_code, bytes(body)
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"the OpenID provider is unreachable: {exc}") from exc

    def _get_json(self, url: str) -> dict[str, Any]:
        status, body = self._request("GET", url)
        if status != 200:
            raise ProviderUnavailable(f"{url} answered {status}")
        return _json_object(body, url)


def _pick_key(keys: list[dict[str, Any]], kid: object, algorithm: str) -> jwt.PyJWK | None:
    candidates = [
        k
        for k in keys
        if k.get("use", "sig") == "sig"
        and k.get("alg", algorithm) == algorithm
        and (kid is None or k.get("kid") == kid)
    ]
    # Without a kid the token can only be matched when one key fits.
    if kid is None and len(candidates) != 1:
        return None
    for candidate in candidates:
        try:
            return jwt.PyJWK(candidate, algorithm=algorithm)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("ignoring the provider's key %r: %s", candidate.get("kid"), exc)
    return None


def _json_object(body: bytes, url: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise ProviderUnavailable(f"{url} answered no JSON") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url} answered JSON that is no object")
    return document


def _http_url(value: object) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value


def _invalid(reason: str) -> OIDCError:
    return OIDCError("invalid_id_token", f"the provider's ID token is not acceptable: {reason}")


def init_app(app: Flask, config: OIDCConfig) -> None:
    """Give ``app`` the configured provider, if single sign-on is on."""
    app.extensions[_EXTENSION] = Provider(config) if config.enabled else None


def get_provider() -> Provider | None:
    """Return the current app's OpenID provider, or None when single sign-on is off."""
    return current_app.extensions[_EXTENSION]
