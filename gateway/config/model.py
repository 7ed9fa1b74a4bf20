"""Typed, frozen configuration models.

Every model rejects unknown keys (a typo is an error, not a silently ignored setting). The models
validate one file each; cross-file rules (unique client ids) live in ``loader``.

Which keys need a restart: ``listen.*``, ``database.*`` and ``redis.*`` (see README, "Hot reload").
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address, HeaderRegistry
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_IMPLICIT = "implicit"
GRANT_PASSWORD = "password"  # noqa: S105 - a grant type name, not a password
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

GrantType = Literal[
    "authorization_code",
    "implicit",
    "password",
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "about", "blob"})


class Strict(BaseModel):
    """Base of every config model: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


# --- value checks ---------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (RFC 8252 section 7.3)."""
    host = host.lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_origin(value: str) -> str:
    """An exact Web origin: ``scheme://host[:port]``, lower case, nothing after the authority."""
    if value in ("*", "null"):
        raise ValueError(f"{value!r} is not allowed: list exact origins")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an origin like https://app.example.com")
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must be an origin only: no path, trailing slash, query or user info")
    if "*" in value:
        raise ValueError("wildcards are not allowed: list exact origins")
    if value != value.lower():
        raise ValueError("must be lower case, as browsers send it")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("http origins are allowed only for localhost; use https")
    return value


def check_redirect_uri(value: str) -> str:
    """A registered redirect URI (RFC 9700 section 2.1, 2.6; RFC 6749 section 3.1.2)."""
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if not scheme:
        raise ValueError("must be an absolute URI")
    if scheme in FORBIDDEN_SCHEMES:
        raise ValueError(f"the {scheme}: scheme is not allowed")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        # RFC 3986: a URI has no spaces or control characters (a raw one would also end up in
        # a Location header).
        raise ValueError("must not contain spaces or control characters")
    if "*" in value:
        raise ValueError("wildcards are not allowed: redirect URIs are matched exactly")
    if parts.fragment or value.endswith("#"):
        raise ValueError("must not contain a fragment (RFC 6749 section 3.1.2)")
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError("must name a host")
        if "@" in parts.netloc:
            raise ValueError("must not contain user info")
        if scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("http is allowed only for loopback hosts (RFC 9700 section 2.6)")
    elif "." not in scheme:
        # RFC 8252 section 7.1: private-use schemes are reverse domain names.
        raise ValueError("a custom scheme must be a reverse domain name such as com.example.app")
    return value


def check_provider_url(value: str) -> str:
    """An external provider's endpoint: https (http only on loopback, for local testing), since
    secrets, codes and signing keys travel over it."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an https URL")
    if "@" in parts.netloc or parts.fragment:
        raise ValueError("must not contain user info or a fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https (http only for loopback hosts)")
    return value


def check_backchannel_logout_uri(value: str) -> str:
    """OIDC Back-Channel Logout 1.0 section 2.2: an absolute URL the gateway POSTs logout tokens
    to; https (http only on loopback, as for redirect URIs), no fragment (a query is allowed)."""
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute https URL such as https://app.example.com/logout")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain spaces or control characters")
    if parts.fragment or value.endswith("#"):
        raise ValueError("must not contain a fragment (Back-Channel Logout 1.0 section 2.2)")
    if "@" in parts.netloc:
        raise ValueError("must not contain user info")
    if parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("http is allowed only for loopback hosts (127.0.0.1, localhost, [::1])")
    return value


def check_path_or_url(value: str, example: str, *, query: bool = True) -> str:
    """An absolute path on this gateway's host (``example``; a query only when ``query``), or an
    https URL (``check_provider_url``); never a fragment, a backslash or a scheme-relative
    ``//``."""
    if value.startswith("/") and not value.startswith("//"):
        refused = "#\\" if query else "?#\\"
        if any(ch in value for ch in refused) or any(ord(ch) < 0x21 for ch in value):
            raise ValueError(f"must be a plain path such as {example}, or an https URL")
        return value
    return check_provider_url(value)


def check_initiate_login_uri(value: str) -> str:
    """OIDC Registration 2: https (http only on loopback), no fragment; or a path of this
    gateway such as ``/login/start`` (the token handler's own sign-in)."""
    return check_path_or_url(value, "/login/start")


def check_endpoint(value: str) -> str:
    """An app's endpoint key: an https URL (an external provider's endpoint), or an absolute path
    such as ``/oauth2/token``, the reference's way of naming this gateway's own endpoint (only
    in ``default.json``, checked by the loader)."""
    return check_path_or_url(value, "/oauth2/token", query=False)


def is_path(value: str | None) -> bool:
    """Whether an endpoint key names a path of this gateway rather than a URL."""
    return value is not None and value.startswith("/")


def check_scope_token(value: str) -> str:
    """A scope token per RFC 6749 section 3.3 (NQCHAR without space)."""
    if not value or any(ch in ' "\\' or not 0x21 <= ord(ch) <= 0x7E for ch in value):
        raise ValueError(f"{value!r} is not a valid scope token")
    return value


def check_route_prefix(value: str) -> str:
    if not value.startswith("/") or not value.endswith("/"):
        raise ValueError("must start and end with '/', e.g. /api/")
    if "//" in value or "/../" in value or "/./" in value or "%" in value:
        raise ValueError("must be a plain path without empty, dot or encoded segments")
    return value


def path_under_prefix(path: str, prefix: str) -> bool:
    """Whether a request path belongs to a route prefix: below it, or the prefix without its
    trailing slash (``/api`` for ``/api/``). The one rule for routing and for CORS."""
    return path.startswith(prefix) or path == prefix.rstrip("/")


def check_upstream(value: str) -> str:
    if value.startswith("/") and not value.startswith("//"):
        # A path of this gateway itself (the demo API): resolved against the listen address.
        if any(ch in value for ch in "?#%\\") or any(ord(ch) < 0x21 for ch in value):
            raise ValueError("a path upstream must be a plain path such as /demo-api")
        if any(segment in (".", "..") for segment in value.split("/")):
            # /x/../api is /api: a loop to a route's own prefix must not hide behind one.
            raise ValueError("a path upstream must not contain . or .. segments")
        return value.rstrip("/") or "/"
    if any(ord(ch) < 0x21 or ch == "\\" for ch in value):
        raise ValueError("must not contain spaces, backslashes or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http(s) URL such as http://127.0.0.1:9000, or a path of this gateway"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must not contain a query, fragment or user info")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    return value


def parse_mail_address(value: str) -> Address:
    """One RFC 5322 mailbox, ``alice@example.com`` or ``Alice <alice@example.com>``: no groups,
    no lists, no line breaks (a header injection)."""
    if not value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must be one email address, without line breaks or control characters")
    try:
        # An AddressHeader (typeshed types the registry's result as its base class).
        header: Any = HeaderRegistry()("to", value)
    except Exception:  # the parser raises assorted errors on some malformed input
        raise ValueError(f"{value!r} is not an email address") from None
    groups = header.groups
    if header.defects or len(groups) != 1 or groups[0].display_name is not None:
        raise ValueError(f"{value!r} is not one email address such as Name <name@example.com>")
    (address,) = groups[0].addresses
    if not isinstance(address, Address) or not (address.username and address.domain):
        raise ValueError(f"{value!r} is not an email address such as name@example.com")
    if len(address.addr_spec) > 320:
        raise ValueError(f"{value!r} is not an email address such as name@example.com")
    return address


def check_mail_address(value: str) -> str:
    parse_mail_address(value)
    return value


@dataclass(frozen=True, slots=True)
class MailServer:
    """Where ``mail.url`` points: host, port and how the connection is protected."""

    host: str
    port: int
    security: Literal["starttls", "tls", "plain"]


# scheme -> (protection, default port)
MAIL_SCHEMES: Mapping[str, tuple[Literal["starttls", "tls", "plain"], int]] = MappingProxyType(
    {
        "smtp": ("starttls", 587),
        "smtps": ("tls", 465),
        "smtp+plain": ("plain", 25),
    }
)


def parse_mail_url(value: str) -> MailServer:
    """``smtp://host[:port]`` (STARTTLS required, 587), ``smtps://host[:port]`` (TLS from the
    first byte, 465) or ``smtp+plain://host[:port]`` (no TLS: loopback hosts only, 25)."""
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in MAIL_SCHEMES:
        raise ValueError(
            "must be smtp://host:port (STARTTLS required), smtps://host:port (TLS from the "
            "start) or smtp+plain://127.0.0.1:port (no TLS, loopback only)"
        )
    if "@" in parts.netloc:
        raise ValueError("put the credentials in mail.username and mail.password, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://host:port only (no path, query or fragment)")
    host = parts.hostname
    if not host or any(ord(ch) < 0x21 for ch in value):
        raise ValueError("must name a host, e.g. smtp://smtp.example.com:587")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    security, default_port = MAIL_SCHEMES[scheme]
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    if security == "plain" and not is_loopback_host(host):
        raise ValueError(
            "smtp+plain sends passwords and links unencrypted, so only to a loopback host (a "
            "local relay or test server); use smtp:// (STARTTLS) or smtps://"
        )
    return MailServer(host, port or default_port, security)


def check_mail_url(value: str) -> str:
    parse_mail_url(value)
    return value


Origin = Annotated[str, AfterValidator(check_origin)]
RedirectUri = Annotated[str, AfterValidator(check_redirect_uri)]
ScopeToken = Annotated[str, AfterValidator(check_scope_token)]
ProviderUrl = Annotated[str, AfterValidator(check_provider_url)]
Endpoint = Annotated[str, AfterValidator(check_endpoint)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- conf/gateway.json ----------------------------------------------------------------------


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - naming them, not binding


class Listen(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)

    def local_url(self) -> str:
        """How a process on this machine reaches the listener (the wildcard as loopback)."""
        host = self.host
        if host in WILDCARD_HOSTS:
            host = "127.0.0.1" if host != "::" else "::1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class Database(Strict):
    url: SecretStr | None = None
    pool_min: int = Field(1, ge=0, le=100)
    pool_max: int = Field(10, ge=1, le=500)
    connect_timeout: float = Field(5.0, gt=0, le=120)
    command_timeout: float = Field(10.0, gt=0, le=600)
    # How long a request waits for the database before answering 503 (a hung server included).
    request_timeout: float = Field(3.0, gt=0, le=120)
    embedded_dir: str = "var/pgdata"
    # Deleting sessions, tokens and codes that are over (daemon.housekeep); 0 turns it off.
    housekeeping_interval: int = Field(3600, ge=0, le=7 * 86400)
    housekeeping_keep: int = Field(86400, ge=3600)
    audit_retention_days: int = Field(365, ge=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> Database:
        if self.pool_min > self.pool_max:
            raise ValueError("pool_min must not exceed pool_max")
        return self


REDIS_SCHEMES = frozenset({"redis", "rediss"})


@dataclass(frozen=True, slots=True)
class RedisServer:
    """Where ``redis.url`` points. ``password`` and ``username`` are secrets' carriers: never
    logged (``__repr__`` leaves them out)."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_redis_url(value: str) -> RedisServer:
    """``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS). Messages never
    repeat the URL, which may hold a password."""
    parts = urlsplit(value)
    if parts.scheme not in REDIS_SCHEMES or not parts.hostname:
        raise ValueError("must be a URL such as redis://127.0.0.1:6379/0 (rediss:// for TLS)")
    if parts.query or parts.fragment or any(ord(ch) < 0x21 for ch in value):
        raise ValueError("must be redis://host:port/db only (no query, fragment or spaces)")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    path = parts.path.strip("/")
    if path and not (path.isdigit() and int(path) < 1 << 16):
        raise ValueError("the path must be a database number such as /0")
    return RedisServer(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class Redis(Strict):
    """The Redis server that replicas share rate-limit buckets through (README, "Rate
    limits"). Unset: every process keeps its own buckets. Restart to change."""

    url: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_redis_url(value.get_secret_value())
        return value

    @property
    def server(self) -> RedisServer | None:
        return parse_redis_url(self.url.get_secret_value()) if self.url is not None else None


class RateLimit(Strict):
    """A token bucket: ``rate`` requests per second on average, up to ``burst`` at once (a full
    bucket). Unset ``burst``: the rate rounded up (at least 1)."""

    rate: float = Field(gt=0, le=1_000_000)
    burst: int | None = Field(None, ge=1, le=1_000_000)

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))


def _rate_limit_kind(value: Any) -> str | None:
    if value is False:
        return "off"
    return TAG_RATE_LIMIT if isinstance(value, dict | RateLimit) else None


# Tags of tagged unions: the loader leaves them out of the keys it reports.
TAG_RATE_LIMIT = "bucket"
UNION_TAGS = frozenset({TAG_RATE_LIMIT})

# A client's or route's own setting: a bucket, false (no limit, whatever the default), or unset
# (the gateway-wide default of rate_limits). Tagged, so that a bad value gets one clear error
# rather than one per member of the union.
OwnRateLimit = (
    Annotated[
        Annotated[RateLimit, Tag(TAG_RATE_LIMIT)] | Annotated[Literal[False], Tag("off")],
        Discriminator(
            _rate_limit_kind,
            custom_error_type="rate_limit",
            custom_error_message='must be an object {"rate": r, "burst": b}, or false for none',
        ),
    ]
    | None
)


def effective_rate_limit(own: OwnRateLimit, default: RateLimit | None) -> RateLimit | None:
    if own is False:
        return None
    return own if own is not None else default


class RateLimits(Strict):
    """Gateway-wide rate-limit settings (README, "Rate limits"). Off unless configured, as in
    Kong and Envoy: a client's ``rate_limit`` or a route's, or a default here."""

    # The bucket of every client without a rate_limit of its own (token, revocation and
    # introspection requests, after client authentication). Unset: none.
    client_default: RateLimit | None = None
    # The bucket of every route without a rate_limit of its own, per session (or per client
    # address without one). Unset: none.
    route_default: RateLimit | None = None
    # Seconds a bucket update in Redis may take; slower counts as an outage (limits fail open).
    redis_timeout: float = Field(0.05, gt=0, le=1.0)
    # Prefix of the bucket keys in Redis (several deployments can share one server).
    redis_prefix: str = Field("gateway:ratelimit:", pattern=r"^[\x21-\x7e]{0,100}$")


class CookieKey(Strict):
    """A cookie sealing key: ``kid`` names it inside sealed values, ``secret`` is 32+ bytes."""

    kid: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (e.g. `openssl rand -base64 32`)")
        return value


class Cookies(Strict):
    samesite: Literal["None", "Lax", "Strict"] = "None"
    secure: bool = True
    keys: tuple[CookieKey, ...] = ()

    @field_validator("secure")
    @classmethod
    def _secure(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false cannot work: browsers drop __Secure- and __Host- cookies (and "
                "SameSite=None ones) without Secure. Browsers accept Secure cookies on "
                "http://localhost, and behind a TLS balancer the browser sees https: keep true"
            )
        return value


class Tokens(Strict):
    access_ttl: int = Field(3600, ge=1, le=86400)
    service_access_ttl: int = Field(86400, ge=1, le=31 * 86400)
    refresh_ttl: int = Field(5184000, ge=60)
    code_ttl: int = Field(60, ge=1, le=600)
    refresh_grace: int = Field(30, ge=0, le=600)
    session_ttl: int = Field(5184000, ge=60)
    signing_alg: Literal["RS256", "ES256"] = "RS256"
    key_rotation_days: int = Field(90, ge=1)
    audience: str | None = None


class Keys(Strict):
    """Where the gateway's own secrets come from; unset values are generated under ``var/``."""

    master_key: SecretStr | None = None
    master_key_file: str = "var/master.key"

    @field_validator("master_key")
    @classmethod
    def _master_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (e.g. `openssl rand -base64 32`)")
        return value


class Limits(Strict):
    body_max: int = Field(1048576, ge=1024)
    login_failures_per_account: int = Field(5, ge=1, le=100)
    login_failures_per_ip: int = Field(30, ge=1)
    login_lock_seconds: int = Field(60, ge=1)
    client_failures: int = Field(10, ge=1)
    client_failures_per_ip: int = Field(50, ge=1)
    client_lock_seconds: int = Field(2, ge=1)
    # Self-registration and recovery requests (each sends a mail): per email address and per
    # client address within an hour; past them, a lock of account_lock_seconds, doubling.
    account_requests_per_email: int = Field(3, ge=1, le=100)
    account_requests_per_ip: int = Field(20, ge=1)
    account_lock_seconds: int = Field(300, ge=1)
    # Client connections (restart to change): a request head must arrive within head_timeout
    # of its first byte, an idle connection closes after idle_timeout, and a process holds at
    # most max_connections (also bounded by its open-file limit).
    head_timeout: float = Field(15.0, gt=0, le=30)
    # A request body may pause, and a response wait for its reader, this long at a time.
    body_timeout: float = Field(30.0, gt=0, le=3600)
    idle_timeout: float = Field(60.0, gt=0, le=3600)
    max_connections: int = Field(10_000, ge=16)


class PasswordHashing(Strict):
    """The argon2id cost of new user password hashes (``gateway user add``, ``user passwd``) and
    of the stand-in check for unknown accounts. The defaults are RFC 9106's second recommended
    option (t=3, 64 MiB, p=4: about 0.15 s a check on one core). Lower costs are for development
    and tests; a stored hash keeps the cost it was made with, so a change applies to new hashes."""

    time_cost: int = Field(3, ge=1, le=20)
    memory_cost: int = Field(65536, ge=8192, le=4_194_304)  # KiB: 8 MiB to 4 GiB
    parallelism: int = Field(4, ge=1, le=64)


class Logging(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True


class Audit(Strict):
    """The audit log's SIEM output (docs/audit.md): each event also as one JSON line of the
    ``gateway.audit`` logger, written by one process of all replicas at a time."""

    log: bool = False
    # Seconds between looks at new events (each process looks; one writes).
    log_interval: float = Field(1.0, ge=0.1, le=60)


class Route(Strict):
    prefix: Annotated[str, AfterValidator(check_route_prefix)]
    upstream: Annotated[str, AfterValidator(check_upstream)]
    auth: Literal["required", "optional", "none"] = "required"
    strip_prefix: bool = False
    identity_headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(30.0, gt=0, le=3600)
    max_body: int = Field(10 * 1048576, ge=0)
    methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    origins: tuple[Origin, ...] = ()
    csrf_header: str | None = None
    websocket: bool = False
    # Requests per session (per client address without one) to this route: a bucket, false for
    # none, or unset for rate_limits.route_default.
    rate_limit: OwnRateLimit = None

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
        bad = [m for m in value if m not in allowed]
        if bad:
            raise ValueError(f"unsupported methods {bad}; choose from {sorted(allowed)}")
        return value


class Login(Strict):
    """Sign-in through the token handler (``/login/start``, OAuth 2.0 for Browser-Based Apps,
    the BFF pattern): the gateway is a confidential client that runs the authorization code flow
    with PKCE itself; the browser only navigates, and ends up with the session cookies.

    ``client`` is that client's ``client_id`` in ``conf/oauth2/<provider>.json``. With the
    ``default`` provider the tokens come from this gateway's own authorization server (the
    callback ``<issuer>/login/callback`` is registered for the client implicitly); with another
    provider file, from that external OpenID provider (its app names the issuer, the secret and
    the scopes). The app's ``javascript_origins`` (and the gateway's own origin) are where
    ``return_to`` may lead."""

    client: str = Field(min_length=1, max_length=255)
    provider: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    # Where the browser goes after signing in when /login/start names no return_to.
    return_to: str = "/"
    # Seconds the login-transaction cookie lives (the time to sign in), at most 600.
    transaction_ttl: int = Field(600, ge=60, le=600)


class Organizations(Strict):
    """Organisations and invitations by email (issue 12)."""

    # Seconds an invitation link stays valid (Keycloak's default is 12 hours; seed 002's
    # admins invite for a week).
    invitation_ttl: int = Field(7 * 86400, ge=300, le=90 * 86400)
    # The scope a service client (client_credentials) needs for /admin/v1/organizations.
    manage_scope: str = Field("organizations.manage", pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")


class Mail(Strict):
    """Outgoing mail (invitations, recovery links). Every message goes through the outbox table
    and is retried with a backoff, so an SMTP outage delays mail and loses none. Without ``url``
    (the newcomer's default) each message is written to ``dir`` as ``<id>.eml`` instead."""

    # smtp://host:port (STARTTLS required), smtps://host:port (implicit TLS), or
    # smtp+plain://127.0.0.1:port (no TLS; loopback only). Unset: files under dir.
    url: Annotated[str, AfterValidator(check_mail_url)] | None = None
    # The From address, e.g. "Example Sign-in <no-reply@example.com>"; required with url.
    sender: Annotated[str, AfterValidator(check_mail_address)] | None = None
    username: str | None = Field(None, min_length=1, max_length=256)
    password: SecretStr | None = None
    # Seconds for connecting and for each SMTP command; a whole message gets 4 times as long.
    timeout: float = Field(10.0, gt=0, le=120)
    dir: str = Field("var/mail", min_length=1)
    # Seconds after which a message that keeps failing is given up (state failed).
    give_up_after: int = Field(3 * 86400, ge=60, le=30 * 86400)
    # Seconds between looks at the outbox for retries that came due (new mail wakes the sender
    # at once through NOTIFY).
    poll_interval: float = Field(5.0, ge=0.05, le=300)

    @model_validator(mode="after")
    def _consistent(self) -> Mail:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        if self.url is None and self.username is not None:
            raise ValueError("username and password are for an SMTP server: set url too")
        if self.url is not None and self.sender is None:
            raise ValueError(
                "set sender, the From address (e.g. Example <no-reply@example.com>), with url"
            )
        return self

    @property
    def server(self) -> MailServer | None:
        return parse_mail_url(self.url) if self.url is not None else None

    @property
    def from_address(self) -> Address:
        """The From mailbox: ``sender``, else ``gateway@localhost`` (files only)."""
        return parse_mail_address(self.sender or "gateway@localhost")

    @property
    def send_deadline(self) -> float:
        """Seconds one message may take in all: connecting, TLS, login, and the transaction."""
        return 4 * self.timeout


class BackchannelLogout(Strict):
    """OpenID Connect Back-Channel Logout: how the gateway delivers logout tokens to the clients
    that have a ``backchannel_logout_uri``. Every logout goes through an outbox table and is
    retried with a backoff (10 s doubling up to an hour) until ``max_age`` has passed."""

    # Seconds for one POST to a client's backchannel_logout_uri (connecting and the answer).
    timeout: float = Field(5.0, gt=0, le=60)
    # Seconds after which a logout that keeps failing is given up (state failed).
    max_age: int = Field(86400, ge=60, le=30 * 86400)
    # Seconds between looks at the outbox for retries that came due (a session that ends wakes
    # the sender at once through NOTIFY).
    poll_interval: float = Field(5.0, ge=0.05, le=300)


class GatewaySettings(Strict):
    """``conf/gateway.json``."""

    listen: Listen = Listen()
    issuer: str | None = None
    database: Database = Database()
    redis: Redis = Redis()
    cookies: Cookies = Cookies()
    tokens: Tokens = Tokens()
    keys: Keys = Keys()
    limits: Limits = Limits()
    passwords: PasswordHashing = PasswordHashing()
    logging: Logging = Logging()
    audit: Audit = Audit()
    rate_limits: RateLimits = RateLimits()
    trusted_proxies: tuple[Network, ...] = ()
    # The one header the trusted proxies set; the other is never read.
    forwarded_header: Literal["X-Forwarded-For", "Forwarded"] = "X-Forwarded-For"
    routes: tuple[Route, ...] = ()
    oauth2_dir: str = "oauth2"
    sites_dir: str = "sites"
    # A theme directory laid over the built-in pages and emails (gateway/themes/), relative to
    # this file's directory; unset: the built-in theme alone.
    theme_dir: str | None = Field(None, min_length=1)
    demo: bool = False
    login: Login | None = None
    organizations: Organizations = Organizations()
    mail: Mail = Mail()
    backchannel_logout: BackchannelLogout = BackchannelLogout()

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://id.example.com")
        if parts.query or parts.fragment or value.endswith("/"):
            raise ValueError("must have no query, fragment or trailing slash (RFC 8414 section 2)")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("must use https unless it is a localhost address")
        return value

    @field_validator("routes")
    @classmethod
    def _unique_prefixes(cls, value: tuple[Route, ...], info: ValidationInfo) -> tuple[Route, ...]:
        seen: set[str] = set()
        resolved: list[Route] = []
        listen = info.data.get("listen")
        for route in value:
            if route.upstream.startswith("/"):
                # Where a request to the prefix lands on this gateway: under a proxied prefix
                # (this route's own included), it would come back here for ever.
                base = route.upstream.rstrip("/") + ("/" if route.strip_prefix else route.prefix)
                if route.upstream == "/" or any(path_under_prefix(base, r.prefix) for r in value):
                    raise ValueError(
                        f"the upstream {route.upstream} of {route.prefix} leads back under a "
                        "proxied prefix: requests would loop"
                    )
                if not isinstance(listen, Listen) or listen.port == 0:
                    raise ValueError(
                        f"the upstream {route.upstream} of {route.prefix} is a path of this "
                        "gateway, which needs a fixed listen.port"
                    )
                route = route.model_copy(update={"upstream": listen.local_url() + route.upstream})
            resolved.append(route)
            if route.prefix in seen:
                raise ValueError(f"prefix {route.prefix} is configured twice")
            if route.prefix.startswith(
                ("/oauth2/", "/.well-known/", "/login/", "/admin/v1/")
            ) or route.prefix in (
                "/healthz/",
                "/readyz/",
                "/metrics/",
            ):
                raise ValueError(f"prefix {route.prefix} is reserved for the gateway")
            seen.add(route.prefix)
        return tuple(resolved)

    def public_issuer(self) -> str:
        """The issuer URL: configured, else derived from the listen address."""
        if self.issuer:
            return self.issuer
        host = self.listen.host
        if host in WILDCARD_HOSTS:
            host = "localhost"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.listen.port}"


# --- conf/oauth2/<provider>.json --------------------------------------------------------------


class AppConfig(Strict):
    """One application (client) of a provider file.

    In ``default.json`` an app is a client of this gateway; in other provider files
    (``google.json``) it describes this gateway's registration at an external identity provider.
    """

    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = None
    project_id: str | None = None
    issuers: tuple[str, ...] = ()
    scopes: tuple[ScopeToken, ...] = ("openid", "profile", "email", "offline_access")
    audiences: tuple[str, ...] = ()
    redirect_uris: tuple[RedirectUri, ...] = ()
    post_logout_redirect_uris: tuple[RedirectUri, ...] = ()
    javascript_origins: tuple[Origin, ...] = ()
    allowed_ips: tuple[Network, ...] = ()
    # An external provider's endpoints (https URLs). In default.json they may name this
    # gateway's own endpoints instead, as the reference's files do ("/oauth2/token").
    auth_uri: Endpoint | None = None
    token_uri: Endpoint | None = None
    cert_uri: Endpoint | None = None
    jwks_uri: Endpoint | None = None
    auth_provider_x509_cert_url: Endpoint | None = None
    userinfo_uri: Endpoint | None = None
    revocation_uri: Endpoint | None = None  # RFC 7009, for the token handler's sign-out
    # Where this app starts its own sign-in (OIDC Core 4, third-party initiated login): after an
    # invitation is accepted the browser goes there with iss and login_hint.
    initiate_login_uri: Annotated[str, AfterValidator(check_initiate_login_uri)] | None = None
    # OpenID Connect Back-Channel Logout 1.0: where the gateway POSTs a logout token when a
    # session in which this app received tokens ends; with session_required the token always
    # carries sid (it does anyway).
    backchannel_logout_uri: Annotated[str, AfterValidator(check_backchannel_logout_uri)] | None = (
        None
    )
    backchannel_logout_session_required: bool = False
    # Whether this app's issuers may sign JWT bearer assertions (RFC 7523). Unset: yes, unless
    # the app is a sign-in provider (auth_uri and token_uri): a provider users sign in with must
    # not also mint grants for whatever sub its tokens carry.
    assertions: bool | None = None
    grant_types: tuple[GrantType, ...] | None = None
    pkce: Literal["required", "optional"] | None = None
    consent: bool = False
    algorithm: Literal["RS256", "ES256", "HS256"] | None = None
    access_ttl: int | None = Field(None, ge=1, le=86400)
    token_delivery: Literal["body+cookies", "cookies", "body"] = "body+cookies"  # noqa: S105
    token_endpoint_auth_method: (
        Literal["client_secret_basic", "client_secret_post", "none"] | None
    ) = None
    # Token, revocation and introspection requests of this client (after it authenticated): a
    # bucket, false for none, or unset for rate_limits.client_default (default.json only).
    rate_limit: OwnRateLimit = None

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if any(not 0x21 <= ord(ch) <= 0x7E for ch in value):
            raise ValueError("must be printable ASCII without spaces")
        return value

    @model_validator(mode="after")
    def _hs256_key_length(self) -> AppConfig:
        secret = self.client_secret
        if self.algorithm == "HS256" and secret and len(secret.get_secret_value().encode()) < 32:
            raise ValueError("HS256 needs a client_secret of at least 32 bytes (RFC 7518 3.2)")
        return self

    @model_validator(mode="after")
    def _public_rules(self) -> AppConfig:
        if self.is_public:
            if GRANT_CLIENT_CREDENTIALS in self.effective_grant_types:
                raise ValueError("a public client (no client_secret) cannot use client_credentials")
            if self.pkce == "optional":
                raise ValueError("PKCE is always required for a public client (no client_secret)")
            if self.algorithm == "HS256":
                raise ValueError("HS256 needs a client_secret to sign with")
        return self

    @model_validator(mode="after")
    def _auth_method_matches_secret(self) -> AppConfig:
        method = self.token_endpoint_auth_method
        if method == "none" and not self.is_public:
            raise ValueError(
                "token_endpoint_auth_method none is for a client without client_secret"
            )
        if method not in (None, "none") and self.is_public:
            raise ValueError(f"token_endpoint_auth_method {method} needs a client_secret")
        return self

    @property
    def keys_url(self) -> str | None:
        """Where the app's issuer publishes its signing keys (JWKS, or x509 certificates)."""
        return self.jwks_uri or self.cert_uri or self.auth_provider_x509_cert_url

    @property
    def hs256_key(self) -> bytes | None:
        """The key of this client's HS256 tokens (its secret), when its tokens are HS256; None:
        the gateway's own signing key signs them."""
        if self.algorithm == "HS256" and self.client_secret is not None:
            return self.client_secret.get_secret_value().encode()
        return None

    @property
    def effective_token_delivery(self) -> str:
        """HS256 clients get their tokens in the body only: the gateway never accepts an HS256
        token back, so it sets no cookies for them."""
        return "body" if self.algorithm == "HS256" else self.token_delivery

    @property
    def is_sign_in_provider(self) -> bool:
        return bool(self.auth_uri and self.token_uri)

    @property
    def trusted_for_assertions(self) -> bool:
        if self.assertions is not None:
            return self.assertions
        return not self.is_sign_in_provider

    @property
    def is_public(self) -> bool:
        return self.client_secret is None

    @property
    def effective_grant_types(self) -> tuple[str, ...]:
        if self.grant_types is not None:
            return self.grant_types
        return (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)

    @property
    def requires_pkce(self) -> bool:
        return self.is_public or self.pkce != "optional"


# --- conf/sites/<name>.json -------------------------------------------------------------------


# A site's ``oauth2.identifier`` with this value asks for the gateway's own identifier-first
# step instead of a page of the site (README, "Sites").
BUILTIN_IDENTIFIER = "/oauth2/identifier"


def check_site_page(value: str) -> str:
    """A site's page: an https URL (http only on loopback), or an absolute path on the host the
    request came to (``/signin/``); never a fragment, user info or a scheme-relative ``//``."""
    return check_path_or_url(value, "/signin/")


SitePage = Annotated[str, AfterValidator(check_site_page)]


class SitePages(Strict):
    """Pages of a site the authorization flow sends the browser to; unset means built-in.

    ``identifier``: the sign-in page (``BUILTIN_IDENTIFIER`` for the gateway's own
    identifier-first step); ``secret``: the password page for ``prompt=secret``;
    ``callback``: where ``/oauth2/callback`` sends the browser, with its query;
    ``error``: where an authorization request the gateway cannot return to its client is sent
    with ``code``, ``error`` and ``error_description``."""

    identifier: SitePage | None = None
    secret: SitePage | None = None
    callback: SitePage | None = None
    error: SitePage | None = None

    @property
    def has_builtin_identifier(self) -> bool:
        return self.identifier == BUILTIN_IDENTIFIER


class SiteAccounts(Strict):
    """Self-service accounts on a site's sign-in page (README, "Self-registration and
    recovery"): both off unless a site turns them on."""

    # "Create account": a new account, usable once its email is verified by a link.
    registration: bool = False
    # "Forgot password?": a single-use link by email that sets a new password.
    recovery: bool = False
    # How long the links are valid (seconds): the reset link 30 minutes, the verification
    # link a day by default.
    reset_ttl: int = Field(1800, ge=300, le=86400)
    verify_ttl: int = Field(86400, ge=300, le=7 * 86400)


class SiteConfig(Strict):
    hosts: tuple[str, ...] = ()
    oauth2: SitePages = SitePages()
    accounts: SiteAccounts = SiteAccounts()
    # This site's theme, over the gateway's theme_dir, for requests to its hosts; relative to
    # the directory of gateway.json, like the gateway's.
    theme_dir: str | None = Field(None, min_length=1)


def strip_comments(value: Any) -> Any:
    """Remove ``"//"`` keys (comments) at any depth of a parsed JSON document."""
    if isinstance(value, dict):
        return {k: strip_comments(v) for k, v in value.items() if k != "//"}
    if isinstance(value, list):
        return [strip_comments(v) for v in value]
    return value
