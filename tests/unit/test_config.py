"""Config loading: the sample works; every bad input is reported with file, key and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.config.holder import ConfigHolder
from gateway.errors import ConfigError
from gateway.grants.federation import sign_in_providers
from tests.support import committed_sample, write_conf


def issues_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return [str(issue) for issue in info.value.issues]


def test_sample_configuration_loads_with_its_four_clients(tmp_path: Path) -> None:
    config = load_config(committed_sample(tmp_path), environ={})
    assert set(config.clients) == {"web", "service", "spa", "bff"}
    # The token handler's own client (login): confidential, no password grant, its callback
    # registered implicitly at the derived issuer.
    bff = config.clients["bff"].config
    assert config.gateway.login is not None
    assert config.gateway.login.client == "bff"
    assert not bff.is_public
    assert "password" not in bff.effective_grant_types
    assert bff.redirect_uris == ("http://127.0.0.1:8080/login/callback",)
    assert "password" not in config.clients["spa"].config.effective_grant_types
    web, spa, service = (config.clients[c].config for c in ("web", "spa", "service"))
    assert not web.is_public
    assert web.client_secret is not None
    assert spa.is_public
    assert spa.requires_pkce
    assert "http://localhost:8080" in web.javascript_origins
    assert "http://localhost:8080/oauth2/callback" in web.redirect_uris
    assert service.effective_grant_types == ("client_credentials", "refresh_token")
    assert config.gateway.listen.port == 8080
    assert config.gateway.tokens.code_ttl == 60
    assert config.gateway.cookies.samesite == "None"
    # No issuer in the sample: the listen address (and serve --host/--port) make it.
    assert config.gateway.issuer is None
    assert config.gateway.public_issuer() == "http://127.0.0.1:8080"
    (demo_route,) = config.gateway.routes
    assert demo_route.upstream == "http://127.0.0.1:8080/demo-api"
    assert config.gateway.redis.url is None  # "${GATEWAY_REDIS_URL:-}" with the variable unset
    assert "default" in config.sites


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    assert issues_of(tmp_path / "nope.json") == [f"{tmp_path / 'nope.json'}: file not found"]


def test_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    path.write_text('{\n  "listen": {\n    "port": 80,,\n  }\n}\n')
    (issue,) = issues_of(path)
    assert issue.startswith(f"{path}: invalid JSON at line 3, column 16")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    path.write_text('{"oauth2_dir": "oauth2", "oauth2_dir": "other"}')
    assert issues_of(path) == [f"{path}: oauth2_dir: key appears twice in one object"]


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        gateway={"listen": {"host": "127.0.0.1", "port": 99999, "hots": "x"}},
        clients={
            "web": {
                "client_id": "web",
                "client_secret": "s",
                "redirect_uris": ["http://rp.example.com/cb", "https://rp.example.com/*"],
                "javascript_origins": ["https://app.example.com/"],
            },
            "spa": {"client_id": "spa", "grant_types": ["client_credentials"]},
            "copy": {"client_id": "web", "client_secret": "t"},
        },
    )
    issues = issues_of(path)
    clients_file = tmp_path / "oauth2" / "default.json"
    assert f"{path}: listen.port: Input should be less than or equal to 65535" in issues
    assert f"{path}: listen.hots: unknown key" in issues
    assert (
        f"{clients_file}: web.redirect_uris[0]: http is allowed only for loopback hosts "
        "(RFC 9700 section 2.6)" in issues
    )
    assert (
        f"{clients_file}: web.redirect_uris[1]: wildcards are not allowed: redirect URIs are "
        "matched exactly" in issues
    )
    assert (
        f"{clients_file}: web.javascript_origins[0]: must be an origin only: no path, trailing "
        "slash, query or user info" in issues
    )
    assert (
        f"{clients_file}: spa: a public client (no client_secret) cannot use client_credentials"
        in issues
    )
    assert f"{clients_file}: copy.client_id: client_id 'web' is already used by app 'web'" in issues


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://rp.example.com/cb#x", "must not contain a fragment"),
        ("javascript:alert(1)", "the javascript: scheme is not allowed"),
        ("https://*.example.com/cb", "wildcards are not allowed"),
        ("/relative/cb", "must be an absolute URI"),
        ("myapp:/cb", "a custom scheme must be a reverse domain name"),
        ("https://user@rp.example.com/cb", "must not contain user info"),
    ],
)
def test_unsafe_redirect_uris_are_refused(tmp_path: Path, uri: str, reason: str) -> None:
    """SECURITY-CHECKLIST item 68: unsafe redirect URIs are rejected when the config loads."""
    path = write_conf(
        tmp_path,
        clients={"web": {"client_id": "web", "client_secret": "s", "redirect_uris": [uri]}},
    )
    (issue,) = issues_of(path)
    assert "web.redirect_uris[0]" in issue
    assert reason in issue


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (
            "http://chat.example.com/backchannel",
            "http is allowed only for loopback hosts (127.0.0.1, localhost, [::1])",
        ),
        ("/backchannel", "must be an absolute https URL"),
        ("backchannel", "must be an absolute https URL"),
        (
            "https://chat.example.com/backchannel#x",
            "must not contain a fragment (Back-Channel Logout 1.0 section 2.2)",
        ),
        ("https://chat.example.com/backchannel#", "must not contain a fragment"),
        ("https://user@chat.example.com/backchannel", "must not contain user info"),
        ("com.example.chat:/backchannel", "must be an absolute https URL"),
        ("https://chat.example.com/back channel", "must not contain spaces"),
    ],
)
def test_bad_backchannel_logout_uris_are_config_errors(
    tmp_path: Path, uri: str, reason: str
) -> None:
    """A bad backchannel_logout_uri is an error of the clients file, naming the app's key (as
    for redirect URIs, SECURITY-CHECKLIST item 68: https, http only on loopback)."""
    path = write_conf(
        tmp_path,
        clients={
            "chat": {"client_id": "chat", "client_secret": "s", "backchannel_logout_uri": uri}
        },
    )
    (issue,) = issues_of(path)
    clients_file = tmp_path / "oauth2" / "default.json"
    assert issue.startswith(f"{clients_file}: chat.backchannel_logout_uri: "), issue
    assert reason in issue


def test_backchannel_logout_settings(tmp_path: Path) -> None:
    uris = {
        "a": "https://chat.example.com/backchannel?tenant=1",
        "b": "http://127.0.0.1:9000/backchannel",
        "c": "http://localhost/backchannel",
        "d": "http://[::1]:8080/backchannel",
    }
    path = write_conf(
        tmp_path,
        gateway={"backchannel_logout": {"max_age": 3600, "timeout": 2}},
        clients={
            app: {
                "client_id": app,
                "client_secret": "s",
                "backchannel_logout_uri": uri,
                "backchannel_logout_session_required": app == "a",
            }
            for app, uri in uris.items()
        },
    )
    config = load_config(path, environ={})
    for app, uri in uris.items():
        assert config.clients[app].config.backchannel_logout_uri == uri
    assert config.clients["a"].config.backchannel_logout_session_required is True
    assert config.clients["b"].config.backchannel_logout_session_required is False
    settings = config.gateway.backchannel_logout
    assert (settings.max_age, settings.timeout, settings.poll_interval) == (3600, 2.0, 5.0)
    bad = write_conf(tmp_path / "bad", gateway={"backchannel_logout": {"max_age": 0, "x": 1}})
    issues = issues_of(bad)
    assert any("backchannel_logout.max_age: " in i for i in issues), issues
    assert any("backchannel_logout.x: unknown key" in i for i in issues), issues


def test_loopback_and_native_redirect_uris_are_accepted(tmp_path: Path) -> None:
    uris = ["http://127.0.0.1:9000/cb", "http://localhost/cb", "com.example.app:/cb"]
    path = write_conf(tmp_path, clients={"app": {"client_id": "app", "redirect_uris": uris}})
    assert load_config(path, environ={}).clients["app"].config.redirect_uris == tuple(uris)


@pytest.mark.parametrize(
    "origin", ["*", "null", "https://App.example.com", "http://app.example.com"]
)
def test_unsafe_origins_are_refused(tmp_path: Path, origin: str) -> None:
    path = write_conf(
        tmp_path,
        clients={"web": {"client_id": "web", "client_secret": "s", "javascript_origins": [origin]}},
    )
    (issue,) = issues_of(path)
    assert "web.javascript_origins[0]" in issue


def test_environment_placeholders_are_expanded(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        gateway={"issuer": "${ISSUER}", "listen": {"host": "${HOST:-0.0.0.0}", "port": 8080}},
        clients={"web": {"client_id": "web", "client_secret": "${WEB_SECRET}"}},
    )
    config = load_config(path, environ={"ISSUER": "https://id.example.com", "WEB_SECRET": "x$y"})
    assert config.gateway.issuer == "https://id.example.com"
    assert config.gateway.listen.host == "0.0.0.0"
    secret = config.clients["web"].config.client_secret
    assert secret is not None
    assert secret.get_secret_value() == "x$y"


def test_missing_environment_variable_names_file_and_key(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path, clients={"web": {"client_id": "web", "client_secret": "${WEB_SECRET}"}}
    )
    issues = issues_of(path)
    assert (
        f"{tmp_path / 'oauth2' / 'default.json'}: web.client_secret: environment variable "
        "WEB_SECRET is not set" in issues
    )


def test_comments_are_ignored_and_secrets_are_not_printed(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        clients={"web": {"//": "a comment", "client_id": "web", "client_secret": "hunter2"}},
    )
    config = load_config(path, environ={})
    assert "hunter2" not in repr(config.clients["web"])


def test_public_client_cannot_opt_out_of_pkce(tmp_path: Path) -> None:
    path = write_conf(tmp_path, clients={"spa": {"client_id": "spa", "pkce": "optional"}})
    (issue,) = issues_of(path)
    assert "PKCE is always required for a public client" in issue


def test_reserved_route_prefix_is_refused(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path, gateway={"routes": [{"prefix": "/oauth2/", "upstream": "http://127.0.0.1:1"}]}
    )
    (issue,) = issues_of(path)
    assert "routes: Value error" not in issue
    assert "prefix /oauth2/ is reserved for the gateway" in issue


def test_reload_keeps_old_config_on_invalid_edit(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    holder = ConfigHolder(load_config(path))
    before = holder.current
    path.write_text("{ broken")
    assert holder.reload() is False
    assert holder.current is before
    write_conf(tmp_path, gateway={"tokens": {"access_ttl": 60}})
    assert holder.reload() is True
    assert holder.current.gateway.tokens.access_ttl == 60
    assert holder.generation == 1


def test_hs256_needs_a_long_secret(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        clients={"old": {"client_id": "old", "client_secret": "short", "algorithm": "HS256"}},
    )
    (issue,) = issues_of(path)
    assert "HS256 needs a client_secret of at least 32 bytes" in issue


@pytest.mark.parametrize(
    ("client", "reason"),
    [
        (
            {"client_id": "c", "client_secret": "x", "token_endpoint_auth_method": "none"},
            "token_endpoint_auth_method none is for a client without client_secret",
        ),
        (
            {"client_id": "c", "token_endpoint_auth_method": "client_secret_basic"},
            "token_endpoint_auth_method client_secret_basic needs a client_secret",
        ),
        (
            {"client_id": "c", "client_secret": "x", "token_endpoint_auth_method": "basic"},
            "token_endpoint_auth_method",
        ),
    ],
)
def test_auth_method_must_fit_the_client(
    tmp_path: Path, client: dict[str, str], reason: str
) -> None:
    """SECURITY-CHECKLIST item 75: a registration that cannot be met is a config error."""
    path = write_conf(tmp_path, clients={"c": client})
    (issue,) = issues_of(path)
    assert reason in issue


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://idp.example.com/token", True),
        ("http://127.0.0.1:9000/token", True),
        ("http://idp.example.com/token", False),
        ("https://user@idp.example.com/token", False),
        ("ftp://idp.example.com/token", False),
    ],
)
def test_provider_endpoints_must_be_https(tmp_path: Path, url: str, ok: bool) -> None:
    """Secrets, codes and signing keys travel to a provider's token_uri and jwks_uri: plain http
    is refused except on loopback."""
    path = write_conf(tmp_path)
    (tmp_path / "oauth2" / "idp.json").write_text(
        json.dumps({"web": {"client_id": "gw", "token_uri": url, "jwks_uri": url}})
    )
    if ok:
        assert load_config(path, environ={}).providers["idp"]["web"].token_uri == url
    else:
        problems = issues_of(path)
        assert any("token_uri" in p for p in problems), problems


@pytest.mark.parametrize(
    ("issuer", "ok"),
    [
        ("https://op.example.com", True),
        ("http://127.0.0.1:9000", True),
        ("http://op.example.com", False),
        ("op.example.com", False),
    ],
)
def test_the_login_providers_issuer_must_be_https(tmp_path: Path, issuer: str, ok: bool) -> None:
    """login.provider: discovery, the code and the client secret travel to the issuer's
    endpoints, so a plain-http issuer would hand them to anyone on the path."""
    path = write_conf(tmp_path, gateway={"login": {"client": "bff", "provider": "op"}})
    app = {"client_id": "bff", "client_secret": "s" * 24, "issuers": [issuer]}
    (tmp_path / "oauth2" / "op.json").write_text(json.dumps({"web": app}))
    if ok:
        assert load_config(path, environ={}).login_app() is not None
    else:
        problems = issues_of(path)
        assert any("web.issuers[0]" in p for p in problems), problems


# --- the reference's own client files ----------------------------------------------------------

REFERENCE_WEB = {
    "issuers": ["accounts.example.test"],
    "scopes": ["openid", "profile", "api"],
    "client_id": "web-example.test",
    "client_secret": "reference-web-secret-0123456789abcdef",
    "algorithm": "HS256",
    "auth_uri": "/oauth2/authorize",
    "token_uri": "/oauth2/token",
    "redirect_uris": ["http://localhost:8080/oauth2/callback"],
    "javascript_origins": ["http://localhost:8080"],
}


def test_reference_endpoint_paths_name_the_gateway_itself(tmp_path: Path) -> None:
    """DESIGN.md section 4: the reference writes ``"auth_uri": "/oauth2/authorize"`` and
    ``"token_uri": "/oauth2/token"`` for its own apps. In default.json they load (as paths or as
    the issuer's URL) and do not make the app an external sign-in provider or assertion issuer."""
    own_urls = {
        **REFERENCE_WEB,
        "client_id": "ios",
        "auth_uri": "http://localhost:8080/oauth2/auth",
        "token_uri": "http://localhost:8080/oauth2/token",
        "userinfo_uri": "/oauth2/userinfo",
        "jwks_uri": "/oauth2/jwks",
    }
    path = write_conf(
        tmp_path,
        gateway={"issuer": "http://localhost:8080"},
        clients={"web": REFERENCE_WEB, "ios": own_urls},
    )
    config = load_config(path, environ={})
    assert config.clients["web-example.test"].config.token_uri == "/oauth2/token"
    assert config.clients["ios"].config.auth_uri == "http://localhost:8080/oauth2/auth"
    assert config.external_providers == {}
    assert sign_in_providers(config) == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("auth_uri", "/login"),
        ("token_uri", "/oauth2/authorize"),
        ("token_uri", "https://idp.example.com/token"),
        ("auth_uri", "http://localhost:9999/oauth2/authorize"),
    ],
)
def test_default_json_endpoints_must_be_the_gateways_own(
    tmp_path: Path, key: str, value: str
) -> None:
    """An endpoint key in default.json that names anything but this gateway's endpoint is an
    error that says where external providers go."""
    path = write_conf(
        tmp_path,
        gateway={"issuer": "http://localhost:8080"},
        clients={"web": {**REFERENCE_WEB, key: value}},
    )
    (issue,) = issues_of(path)
    assert f"web.{key}: in default.json names this gateway's own endpoint" in issue
    assert "own file" in issue


def test_provider_files_keep_requiring_urls(tmp_path: Path) -> None:
    """In an external provider's file a path is refused: it must be the provider's https URL."""
    path = write_conf(tmp_path)
    (tmp_path / "oauth2" / "partner.json").write_text(
        json.dumps({"web": {"client_id": "gw", "auth_uri": "/oauth2/authorize"}})
    )
    (issue,) = issues_of(path)
    assert "partner.json: web.auth_uri: must be an https URL of the provider" in issue


def test_insecure_cookies_are_refused_with_the_reason(tmp_path: Path) -> None:
    """``cookies.secure: false`` would strip Secure from __Secure-/__Host- cookies, which
    browsers then drop silently: config check refuses it and says what to do instead."""
    path = write_conf(tmp_path, gateway={"cookies": {"secure": False}})
    (issue,) = issues_of(path)
    assert "cookies.secure: false cannot work" in issue
    assert "http://localhost" in issue


def test_a_path_upstream_is_this_gateway_at_its_listen_port(tmp_path: Path) -> None:
    """A route whose upstream is a path goes to this gateway itself, at the port it really
    listens on (``serve --port`` included); a path under a proxied prefix would loop and a
    random port (0) cannot be reached: both are errors."""
    route = {"prefix": "/api/", "upstream": "/demo-api", "strip_prefix": True}
    path = write_conf(tmp_path, gateway={"routes": [route]})
    config = load_config(path, environ={}, overrides={"listen": {"port": 9000}})
    assert config.gateway.routes[0].upstream == "http://127.0.0.1:9000/demo-api"
    assert config.gateway.public_issuer() == "http://127.0.0.1:9000"
    for name, loop in {
        "under the prefix": {**route, "upstream": "/api/x"},
        "the root": {**route, "upstream": "/", "strip_prefix": False},
        "itself unstripped": {**route, "upstream": "/", "strip_prefix": True},
        "back to the prefix": {**route, "upstream": "/api", "strip_prefix": True},
    }.items():
        looping = write_conf(tmp_path / name.replace(" ", "-"), gateway={"routes": [loop]})
        (issue,) = issues_of(looping)
        assert "leads back under a proxied prefix: requests would loop" in issue, name
    random = write_conf(tmp_path / "random", gateway={"routes": [route], "listen": {"port": 0}})
    (issue,) = issues_of(random)
    assert "needs a fixed listen.port" in issue


def test_a_reloaded_listen_change_waits_for_the_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review: a reload that changed listen.port moved the derived issuer and the routes to
    the gateway itself to a port nothing listened on. Until the restart, both stay with the
    running listener; the rest of the edit applies, and the log says a restart is needed."""
    route = {"prefix": "/api/", "upstream": "/demo-api", "strip_prefix": True}
    path = write_conf(tmp_path, gateway={"routes": [route], "listen": {"port": 8080}})
    holder = ConfigHolder(load_config(path, environ={}))
    settings = json.loads(path.read_text())
    settings["listen"] = {"port": 9999}
    settings["tokens"]["access_ttl"] = 120
    path.write_text(json.dumps(settings))
    assert holder.reload()
    current = holder.current.gateway
    assert current.tokens.access_ttl == 120
    assert current.listen.port == 8080
    assert current.public_issuer() == "http://127.0.0.1:8080"
    assert current.routes[0].upstream == "http://127.0.0.1:8080/demo-api"
    assert "need a restart changed: listen" in caplog.text


def test_site_pages_are_paths_or_https_urls(tmp_path: Path) -> None:
    """A site's ``oauth2`` pages are redirect targets of the gateway: an absolute path on the
    request's host or an https URL (http on loopback), never scheme-relative, a script or a
    fragment (SECURITY-CHECKLIST item 66: the gateway sends browsers only where its
    configuration says)."""
    good = {
        "identifier": "/oauth2/identifier",
        "secret": "/signin/secret?x=1",
        "callback": "https://app.example.test/callback/",
        "error": "http://127.0.0.1:8080/error",
    }
    path = write_conf(tmp_path / "good", sites={"s": {"hosts": ["a.test"], "oauth2": good}})
    pages = load_config(path, environ={}).site_pages("A.test:443")
    assert pages.has_builtin_identifier
    assert pages.callback == good["callback"]
    assert load_config(path, environ={}).site_pages("b.test").error is None
    bad = {
        "identifier": "//evil.example/signin",
        "secret": "javascript:alert(1)",
        "callback": "http://app.example.test/cb",
        "error": "/error#x",
    }
    path = write_conf(tmp_path / "bad", sites={"s": {"hosts": ["a.test"], "oauth2": bad}})
    issues = issues_of(path)
    assert len(issues) == 4, issues
    for key in bad:
        assert any(f"oauth2.{key}" in issue for issue in issues), (key, issues)
