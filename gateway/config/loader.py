"""Load ``conf/``: parse JSON, expand ``${ENV}``, validate, and report every problem at once.

A ``Config`` is an immutable snapshot: the running server reads it from a ``ConfigHolder`` and a
reload swaps in a new snapshot in one assignment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.model import (
    GRANT_AUTHORIZATION_CODE,
    UNION_TAGS,
    AppConfig,
    GatewaySettings,
    SiteConfig,
    SitePages,
    check_provider_url,
    is_path,
    strip_comments,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.themes import check_theme

M = TypeVar("M", bound=BaseModel)

DEFAULT_CONFIG = "conf/gateway.json"
DEFAULT_PROVIDER = "default"
# The gateway's own endpoints that an app of default.json may name in its endpoint keys, as the
# reference's files do ("auth_uri": "/oauth2/authorize"): informational, never an external IdP.
OWN_ENDPOINTS = {
    "auth_uri": ("/oauth2/authorize", "/oauth2/auth"),
    "token_uri": ("/oauth2/token",),
    "userinfo_uri": ("/oauth2/userinfo",),
    "jwks_uri": ("/oauth2/jwks",),
    "cert_uri": ("/oauth2/jwks",),
    "auth_provider_x509_cert_url": ("/oauth2/jwks",),
}
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PROVIDER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class Client:
    """A client of this gateway: an app of the ``default`` provider file."""

    provider: str
    app: str
    source: str
    config: AppConfig

    @property
    def client_id(self) -> str:
        return self.config.client_id


@dataclass(frozen=True, slots=True)
class Config:
    """One validated snapshot of everything under ``conf/``."""

    path: Path
    gateway: GatewaySettings
    providers: Mapping[str, Mapping[str, AppConfig]]
    provider_sources: Mapping[str, str]
    clients: Mapping[str, Client]
    sites: Mapping[str, SiteConfig]
    files: tuple[Path, ...] = field(default=())
    # Settings given on the command line (``serve --host/--port``): they win over gateway.json,
    # at every reload too.
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def login_app(self) -> AppConfig | None:
        """The token handler's client (``login``): an app of ``login.provider``'s file."""
        login = self.gateway.login
        if login is None:
            return None
        if login.provider == DEFAULT_PROVIDER:
            client = self.clients.get(login.client)
            return client.config if client is not None else None
        apps = self.providers.get(login.provider, {})
        return next((a for a in apps.values() if a.client_id == login.client), None)

    @property
    def gateway_theme_dir(self) -> Path | None:
        """The gateway's theme directory (``theme_dir``), if any."""
        name = self.gateway.theme_dir
        return self.base_dir / name if name else None

    @property
    def site_theme_dirs(self) -> dict[str, Path]:
        """Site name -> its theme directory, for the sites that have one."""
        return {
            name: self.base_dir / site.theme_dir
            for name, site in self.sites.items()
            if site.theme_dir
        }

    def site_for_host(self, host: str) -> str | None:
        """The site (its file's name) whose ``hosts`` has the host of ``host``, a ``Host``
        header value (port and letter case ignored); the first in file-name order."""
        wanted = host_name(host)
        for name, site in self.sites.items():
            if any(host_name(h) == wanted for h in site.hosts):
                return name
        return None

    def site_pages(self, host: str) -> SitePages:
        """The ``oauth2`` pages of the site for ``host`` (a ``Host`` value); all unset (the
        built-in pages) when no site serves it."""
        name = self.site_for_host(host)
        return self.sites[name].oauth2 if name is not None else SitePages()

    @property
    def external_providers(self) -> dict[str, Mapping[str, AppConfig]]:
        """The provider files that describe other identity providers (all but default.json,
        whose endpoint keys name this gateway's own endpoints)."""
        return {k: v for k, v in self.providers.items() if k != DEFAULT_PROVIDER}

    @property
    def revocation_horizon(self) -> int:
        """Seconds a revocation must be remembered: the longest an access token issued under this
        configuration can live, plus a minute of clock skew."""
        tokens = self.gateway.tokens
        per_client = (c.config.access_ttl or 0 for c in self.clients.values())
        return max(tokens.access_ttl, tokens.service_access_ttl, *per_client) + 60


def host_name(host: str) -> str:
    """The host of a ``Host`` value (or of a site's ``hosts`` entry) without its port, lower
    case, an IPv6 address without brackets."""
    value = host.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") > 1:
        return value  # a bare IPv6 address has no port
    return value.partition(":")[0]


def config_path_from_env(explicit: str | None = None) -> Path:
    """The config file: ``--config``, else ``GATEWAY_CONFIG``, else ``conf/gateway.json``."""
    return Path(explicit or os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG)


def load_config(
    path: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration rooted at ``path``; raise ``ConfigError`` listing all
    problems (file, key, reason) when anything is wrong. ``overrides`` (``{"listen": {"port":
    9000}}``) are merged into gateway.json before validation, so whatever derives from them (the
    issuer, a route to the gateway itself) follows."""
    env = os.environ if environ is None else environ
    issues: list[ConfigIssue] = []
    files: list[Path] = [path]

    raw = _read_json(path, issues)
    gateway: GatewaySettings | None = None
    dirs: dict[str, Any] = {}
    if raw is not None:
        if not isinstance(raw, dict):
            issues.append(ConfigIssue(str(path), "", "must be a JSON object"))
        else:
            expanded = _expand_env(strip_comments(raw), env, str(path), "", issues)
            expanded = _merge(expanded, overrides or {})
            gateway = _validate(GatewaySettings, expanded, str(path), "", issues)
            dirs = expanded
    if raw is None:
        raise ConfigError(issues)
    # Even when gateway.json has errors, look at the other files so every problem is reported.
    oauth2_name = gateway.oauth2_dir if gateway else _str_or(dirs.get("oauth2_dir"), "oauth2")
    sites_name = gateway.sites_dir if gateway else _str_or(dirs.get("sites_dir"), "sites")

    base = path.parent
    providers: dict[str, dict[str, AppConfig]] = {}
    provider_sources: dict[str, str] = {}
    clients: dict[str, Client] = {}
    oauth2_dir = base / oauth2_name
    if not oauth2_dir.is_dir():
        issues.append(ConfigIssue(str(oauth2_dir), "", "directory not found (oauth2_dir)"))
    for file in _json_files(oauth2_dir):
        files.append(file)
        provider = file.stem
        if not _PROVIDER_NAME.match(provider):
            issues.append(ConfigIssue(str(file), "", "file name must be a plain provider name"))
            continue
        provider_sources[provider] = str(file)
        apps = _read_object_of_objects(file, env, issues)
        providers[provider] = {}
        seen: dict[str, str] = {}
        for name, value in apps.items():
            client_id = value.get("client_id")
            if provider == DEFAULT_PROVIDER and isinstance(client_id, str):
                if client_id in seen:
                    issues.append(
                        ConfigIssue(
                            str(file),
                            f"{name}.client_id",
                            f"client_id {client_id!r} is already used by app {seen[client_id]!r}",
                        )
                    )
                    continue
                seen[client_id] = name
            app = _validate(AppConfig, value, str(file), name, issues)
            if app is None:
                continue
            issuer = gateway.public_issuer() if gateway else None
            _check_endpoints(app, provider, issuer, str(file), name, issues)
            if provider != DEFAULT_PROVIDER and app.rate_limit is not None:
                issues.append(
                    ConfigIssue(
                        str(file),
                        f"{name}.rate_limit",
                        "rate limits are for clients of this gateway (default.json), not for "
                        "an external provider's apps",
                    )
                )
            providers[provider][name] = app
            if provider == DEFAULT_PROVIDER:
                clients[app.client_id] = Client(provider, name, str(file), app)

    sites: dict[str, SiteConfig] = {}
    site_sources: dict[str, str] = {}
    sites_dir = base / sites_name
    if sites_dir.exists() and not sites_dir.is_dir():
        issues.append(ConfigIssue(str(sites_dir), "", "must be a directory (sites_dir)"))
    for file in _json_files(sites_dir):
        files.append(file)
        site_raw = _read_json(file, issues)
        if site_raw is None:
            continue
        if not isinstance(site_raw, dict):
            issues.append(ConfigIssue(str(file), "", "must be a JSON object"))
            continue
        site_value = _expand_env(strip_comments(site_raw), env, str(file), "", issues)
        site = _validate(SiteConfig, site_value, str(file), "", issues)
        if site is not None:
            sites[file.stem] = site
            site_sources[file.stem] = str(file)

    theme_name = gateway.theme_dir if gateway else dirs.get("theme_dir")
    _check_themes(
        base,
        theme_name if isinstance(theme_name, str) else None,
        str(path),
        sites,
        site_sources,
        issues,
    )

    if gateway is not None and gateway.login is not None:
        _check_login(gateway, providers, provider_sources, clients, str(path), issues)

    if issues or gateway is None:
        raise ConfigError(issues)
    return Config(
        path=path,
        gateway=gateway,
        providers=MappingProxyType({k: MappingProxyType(v) for k, v in providers.items()}),
        provider_sources=MappingProxyType(provider_sources),
        clients=MappingProxyType(clients),
        sites=MappingProxyType(sites),
        files=tuple(files),
        overrides=MappingProxyType(dict(overrides or {})),
    )


LOGIN_CALLBACK = "/login/callback"


def _check_themes(
    base: Path,
    gateway_theme: str | None,
    file: str,
    sites: Mapping[str, SiteConfig],
    site_sources: Mapping[str, str],
    issues: list[ConfigIssue],
) -> None:
    """Each ``theme_dir`` exists and its templates compile (syntax errors as ``file:line``);
    a site's theme is checked over the gateway's, which its templates may extend."""
    below: tuple[Path, ...] = ()
    if gateway_theme:
        directory = base / gateway_theme
        if directory.is_dir():
            issues.extend(check_theme(directory))
            below = (directory,)
        else:
            issues.append(ConfigIssue(file, "theme_dir", f"directory not found: {directory}"))
    checked: set[Path] = set(below)
    for name, site in sites.items():
        if site.theme_dir is None:
            continue
        directory = base / site.theme_dir
        if not directory.is_dir():
            issues.append(
                ConfigIssue(site_sources[name], "theme_dir", f"directory not found: {directory}")
            )
        elif directory not in checked:
            checked.add(directory)
            issues.extend(check_theme(directory, below))


def _check_login(
    gateway: GatewaySettings,
    providers: Mapping[str, Mapping[str, AppConfig]],
    provider_sources: Mapping[str, str],
    clients: dict[str, Client],
    file: str,
    issues: list[ConfigIssue],
) -> None:
    """``login``: the token handler's client exists and can run the code flow. With this
    gateway's own authorization server, its callback is registered for it here."""
    login = gateway.login
    assert login is not None
    if login.provider == DEFAULT_PROVIDER:
        client = clients.get(login.client)
        if client is None:
            issues.append(
                ConfigIssue(file, "login.client", f"no client {login.client!r} in default.json")
            )
            return
        app = client.config
        source, where = client.source, f"{client.app}"
        if GRANT_AUTHORIZATION_CODE not in app.effective_grant_types:
            issues.append(
                ConfigIssue(
                    source, f"{where}.grant_types", "the login client needs authorization_code"
                )
            )
        callback = gateway.public_issuer() + LOGIN_CALLBACK
        if callback not in app.redirect_uris:
            app = app.model_copy(update={"redirect_uris": (*app.redirect_uris, callback)})
            clients[login.client] = Client(client.provider, client.app, client.source, app)
    else:
        apps = providers.get(login.provider)
        if apps is None:
            issues.append(
                ConfigIssue(file, "login.provider", f"no provider file {login.provider}.json")
            )
            return
        named = [(name, a) for name, a in apps.items() if a.client_id == login.client]
        if not named:
            issues.append(
                ConfigIssue(
                    file,
                    "login.client",
                    f"no app with client_id {login.client!r} in {login.provider}.json",
                )
            )
            return
        where, app = named[0]
        source = provider_sources[login.provider]
        if not app.issuers:
            issues.append(ConfigIssue(source, f"{where}.issuers", "name the provider's issuer URL"))
        for index, issuer in enumerate(app.issuers):
            try:  # discovery, the code, the client secret and the keys travel over it
                check_provider_url(issuer)
            except ValueError as exc:
                issues.append(ConfigIssue(source, f"{where}.issuers[{index}]", str(exc)))
    if app.client_secret is None:
        issues.append(
            ConfigIssue(
                source,
                f"{where}.client_secret",
                "the login client is the token handler's own confidential client: set its secret",
            )
        )


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, object by object."""
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _check_endpoints(
    app: AppConfig,
    provider: str,
    issuer: str | None,
    file: str,
    name: str,
    issues: list[ConfigIssue],
) -> None:
    """Endpoint keys: in default.json, this gateway's own endpoints (a path, or the same under
    the issuer's URL); in other provider files, an external provider's https URLs."""
    for key, own in OWN_ENDPOINTS.items():
        value = getattr(app, key)
        if value is None:
            continue
        if provider != DEFAULT_PROVIDER:
            if is_path(value):
                issues.append(
                    ConfigIssue(
                        file,
                        f"{name}.{key}",
                        "must be an https URL of the provider (a path names this gateway's own "
                        "endpoint, which only default.json may do)",
                    )
                )
            continue
        path = value
        if not is_path(value) and issuer is not None and value.startswith(issuer + "/"):
            path = value[len(issuer) :]
        if path not in own:
            issues.append(
                ConfigIssue(
                    file,
                    f"{name}.{key}",
                    f"in default.json names this gateway's own endpoint: {' or '.join(own)}, "
                    "as a path or under the issuer's URL (external providers go in their own "
                    "file, e.g. google.json)",
                )
            )


def _json_files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(p for p in directory.glob("*.json") if p.is_file())


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result and key != "//":
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _read_json(path: Path, issues: list[ConfigIssue]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(ConfigIssue(str(path), "", "file not found"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(ConfigIssue(str(path), "", f"cannot read: {exc.__class__.__name__}"))
        return None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        issues.append(
            ConfigIssue(
                str(path), "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            )
        )
    except _DuplicateKeyError as exc:
        issues.append(ConfigIssue(str(path), exc.key, "key appears twice in one object"))
    return None


def _read_object_of_objects(
    path: Path, env: Mapping[str, str], issues: list[ConfigIssue]
) -> dict[str, Any]:
    raw = _read_json(path, issues)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.append(ConfigIssue(str(path), "", "must be a JSON object of apps"))
        return {}
    result: dict[str, Any] = {}
    for name, value in strip_comments(raw).items():
        if not isinstance(value, dict):
            issues.append(ConfigIssue(str(path), name, "each app must be a JSON object"))
            continue
        result[name] = _expand_env(value, env, str(path), name, issues)
    return result


def _expand_env(
    value: Any, env: Mapping[str, str], file: str, key: str, issues: list[ConfigIssue]
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _expand_env(v, env, file, _join(key, k), issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, file, f"{key}[{i}]", issues) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        issues.append(ConfigIssue(file, key, f"environment variable {name} is not set"))
        return ""

    expanded = _ENV_REF.sub(substitute, value)
    # An empty expansion of a whole value means "unset" (e.g. "${GATEWAY_MASTER_KEY:-}").
    return None if expanded == "" and value.startswith("${") else expanded


def _str_or(value: Any, default: str) -> str:
    return value if isinstance(value, str) else default


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _validate(
    model: type[M], value: Any, file: str, prefix: str, issues: list[ConfigIssue]
) -> M | None:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = prefix
            for part in error["loc"]:
                if part in UNION_TAGS:
                    continue
                loc = f"{loc}[{part}]" if isinstance(part, int) else _join(loc, str(part))
            issues.append(ConfigIssue(file, loc, _reason(error["type"], error["msg"])))
        return None


def _reason(kind: str, message: str) -> str:
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    return message.removeprefix("Value error, ")
