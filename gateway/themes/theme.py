"""Themes: the gateway's pages and emails as Jinja2 templates that a gateway or a site overrides
one file at a time, as a Keycloak theme overrides ``login.ftl`` or ``email/*.ftl``.

A theme is a directory; every part is optional::

    pages/<name>.html           a page (HTML, autoescaped); pages/base.html is the layout
    mail/<name>.subject.txt     an email's subject (one line), plain text body
    mail/<name>.txt             (never HTML-escaped) and HTML body (autoescaped)
    mail/<name>.html
    messages/<lang>.json        texts, {"key": "text with {placeholders}"}, laid over the
                                built-in ones; a new language code adds a language

Lookup order: the site's theme, the gateway's theme, the built-in one (``default/`` beside this
module). The built-in templates are also reachable as ``default:<name>`` (``{% extends
"default:pages/login.html" %}``), so an override can replace a block of the page it overrides.

A ``Theme`` is built once per configuration snapshot: its templates are compiled when it is
built and never read again, so what ``gateway config check`` validated is what serves, and an
edit takes effect with the reload that validates it (the configuration watcher polls theme
files too). Rendering through an override that fails for any reason (an undefined value used in
a way that fails, a message whose placeholders do not match) is logged once per problem and
answered with the built-in template instead: a broken theme never turns a page into a 500.
The built-in templates render with ``StrictUndefined``, so a typo in them fails their tests.
Templates of theme directories run in Jinja's immutable sandbox: a theme is trusted to say what
a page shows, not to run code in the gateway.

This module imports no aiohttp: the mail sender uses it without a request.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TypeVar

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    nodes,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.errors import ConfigIssue

log = logging.getLogger(__name__)
T = TypeVar("T")

BUILTIN_DIR = Path(__file__).resolve().parent / "default"
BUILTIN_PREFIX = "default"  # "default:pages/login.html" is always the built-in template
TEMPLATE_DIRS = ("pages", "mail")
TEMPLATE_SUFFIXES = (".html", ".txt")
MESSAGES_DIR = "messages"
FALLBACK_LANGUAGE = "en"
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_MAX_REPORTED = 256  # distinct problems remembered for "log once"; bounded
_MAX_PROBLEM = 300  # characters of an exception's message in a log line

Texts = Mapping[str, str]


def format_datetime(value: datetime) -> str:
    """The ``datetime`` filter: ``2027-03-14 15:00 UTC`` (a naive value is taken as UTC),
    unambiguous in every language."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _environment(loader: BaseLoader, undefined: type[Undefined], *, sandboxed: bool) -> Environment:
    """``sandboxed`` for theme directories: their templates reach no Python internals (no
    ``__class__``, no unsafe methods) and change no value they are given."""
    kind = ImmutableSandboxedEnvironment if sandboxed else Environment
    env = kind(
        loader=loader,
        # HTML templates are autoescaped; .txt ones (email subject and text body) are not.
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False
        ),
        undefined=undefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # compiled once per configuration snapshot; see the module docstring
        cache_size=-1,
    )
    env.filters["datetime"] = format_datetime
    return env


def _is_template(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) >= 2
        and parts[0] in TEMPLATE_DIRS
        and name.endswith(TEMPLATE_SUFFIXES)
        and not any(part.startswith(".") for part in parts)  # editors' swap and backup files
    )


def theme_files(directory: Path) -> list[Path]:
    """The files of a theme that count: templates under ``pages/`` and ``mail/`` and message
    files (what the configuration watcher polls)."""
    found: list[Path] = []
    for sub in TEMPLATE_DIRS:
        root = directory / sub
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                name = path.relative_to(directory).as_posix()
                if path.is_file() and _is_template(name):
                    found.append(path)
    messages = directory / MESSAGES_DIR
    if messages.is_dir():
        found.extend(p for p in sorted(messages.glob("*.json")) if p.is_file())
    return found


# --- messages ---------------------------------------------------------------------------------


def read_messages(directory: Path, issues: list[ConfigIssue]) -> dict[str, dict[str, str]]:
    """``messages/<lang>.json`` of a theme: language -> key -> text. Problems go to ``issues``
    (with the file), and the file is then left out."""
    catalog: dict[str, dict[str, str]] = {}
    root = directory / MESSAGES_DIR
    if not root.is_dir():
        return catalog
    for path in sorted(root.glob("*.json")):
        if not path.is_file():
            continue
        if not _LANGUAGE.match(path.stem):
            issues.append(ConfigIssue(str(path), "", "name it <language>.json, e.g. en.json"))
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(str(path), "", f"cannot read: {exc.__class__.__name__}"))
            continue
        except json.JSONDecodeError as exc:
            issues.append(ConfigIssue(f"{path}:{exc.lineno}", "", f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(raw, dict):
            issues.append(ConfigIssue(str(path), "", "must be a JSON object of texts"))
            continue
        texts: dict[str, str] = {}
        for key, value in raw.items():
            if key == "//":
                continue
            if not isinstance(value, str):
                issues.append(ConfigIssue(str(path), key, "must be a string"))
                continue
            texts[key] = value
        catalog[path.stem] = texts
    return catalog


def _merge(layers: Sequence[Mapping[str, Mapping[str, str]]]) -> dict[str, Texts]:
    """Texts per language, later layers over earlier ones; a key missing in a language comes
    from English (of every layer), so a partial translation still renders."""
    languages = {lang for layer in layers for lang in layer}
    merged: dict[str, Texts] = {}
    for lang in languages:
        texts: dict[str, str] = {}
        for layer in layers:
            texts.update(layer.get(FALLBACK_LANGUAGE, {}))
        if lang != FALLBACK_LANGUAGE:
            for layer in layers:
                texts.update(layer.get(lang, {}))
        merged[lang] = MappingProxyType(texts)
    return merged


# --- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendering:
    """One way to render: an environment and the texts that go with it (an override chain
    with its merged messages, or the built-in theme alone)."""

    environment: Environment
    messages: Mapping[str, Texts]

    @property
    def languages(self) -> frozenset[str]:
        return frozenset(self.messages)

    def language(self, preferred: str) -> str:
        """``preferred`` if this rendering has texts in it, else English."""
        return preferred if preferred in self.messages else FALLBACK_LANGUAGE

    def texts(self, lang: str) -> Texts:
        return self.messages[self.language(lang)]

    def render(self, name: str, context: Mapping[str, object]) -> str:
        return self.environment.get_template(name).render(context)


def _builtin_rendering() -> Rendering:
    issues: list[ConfigIssue] = []
    messages = read_messages(BUILTIN_DIR, issues)
    if issues or FALLBACK_LANGUAGE not in messages:  # pragma: no cover - shipped files
        raise RuntimeError(f"the built-in theme is broken: {issues}")
    env = _environment(FileSystemLoader(BUILTIN_DIR), StrictUndefined, sandboxed=False)
    for name in env.list_templates(filter_func=_is_template):
        env.get_template(name)  # a broken built-in template fails here, at start-up
    return Rendering(env, _merge([messages]))


def _override_loader(overrides: Sequence[Path]) -> BaseLoader:
    builtin = FileSystemLoader(BUILTIN_DIR)
    return ChoiceLoader(
        [
            PrefixLoader({BUILTIN_PREFIX: builtin}, delimiter=":"),
            *(FileSystemLoader(directory) for directory in overrides),
            builtin,
        ]
    )


class Theme:
    """One lookup chain: override directories, most specific first (a site's theme, then the
    gateway's), over the built-in theme. With no overrides it is the built-in theme."""

    def __init__(
        self,
        overrides: Sequence[Path] = (),
        *,
        label: str = "built-in theme",
        builtin: Rendering | None = None,
    ) -> None:
        self.overrides = tuple(overrides)
        self.label = label
        self.builtin = builtin or _builtin_rendering()
        self.override: Rendering | None = None
        self._reported: set[tuple[str, str]] = set()
        if self.overrides:
            issues: list[ConfigIssue] = []
            layers = [read_messages(d, issues) for d in reversed(self.overrides)]
            for issue in issues:  # the files changed after validation: leave them out
                log.warning("%s: %s", self.label, issue)
            env = _environment(_override_loader(self.overrides), Undefined, sandboxed=True)
            for name in env.list_templates(filter_func=_is_template):
                try:
                    env.get_template(name)
                except Exception as exc:  # served by the built-in template instead
                    self._report(name, exc)
            messages = _merge([dict(self.builtin.messages), *layers])
            self.override = Rendering(env, messages)

    @property
    def languages(self) -> frozenset[str]:
        """The languages a page can be shown in (the built-in ones and any a theme adds)."""
        return (self.override or self.builtin).languages

    def attempt(self, render: Callable[[Rendering], T], *, what: str) -> T:
        """``render`` with the override chain; if that fails, report it once and ``render``
        with the built-in theme (whose failure, a bug of ours, propagates)."""
        if self.override is not None:
            try:
                return render(self.override)
            except TemplateNotFound as exc:
                if not self._builtin_has(exc.name if isinstance(exc.name, str) else None):
                    raise  # nobody has it: a caller's mistake, not a theme's
                self._report(what, exc)
            except Exception as exc:  # any failure of an override falls back
                self._report(what, exc)
        return render(self.builtin)

    def render(self, name: str, context: Mapping[str, object]) -> str:
        """Template ``name`` (e.g. ``pages/login.html``) with ``context``; no texts added."""
        return self.attempt(lambda rendering: rendering.render(name, context), what=name)

    def _builtin_has(self, name: str | None) -> bool:
        if name is None:
            return False
        try:
            self.builtin.environment.get_template(name)
        except TemplateNotFound:
            return False
        return True

    def _report(self, what: str, exc: BaseException) -> None:
        where = problem_location(exc)
        problem = f"{exc.__class__.__name__}: {exc}"[:_MAX_PROBLEM]
        key = (what, f"{where} {problem}")
        if key in self._reported:
            return
        if len(self._reported) >= _MAX_REPORTED:
            self._reported.clear()
        self._reported.add(key)
        log.warning(
            "%s: template %s failed at %s (%s); using the built-in template",
            self.label,
            what,
            where,
            problem,
        )


def problem_location(exc: BaseException) -> str:
    """``file:line`` of a template problem: the syntax error's own, else the innermost frame
    of template code in the traceback (Jinja gives template frames their file and line)."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or exc.name or '<template>'}:{exc.lineno}"
    found = "unknown place"
    for filename, lineno in _frames(exc.__traceback__):
        if filename.endswith(TEMPLATE_SUFFIXES):
            found = f"{filename}:{lineno}"
    return found


def _frames(tb: TracebackType | None) -> Iterator[tuple[str, int]]:
    while tb is not None:
        yield tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next


class Themes:
    """The themes of one configuration: the built-in one, the gateway's (``theme_dir`` of
    gateway.json) and each site's (``theme_dir`` of a site file, over the gateway's)."""

    def __init__(
        self, gateway_dir: Path | None = None, site_dirs: Mapping[str, Path] | None = None
    ) -> None:
        self.builtin = Theme()
        shared = self.builtin.builtin
        base = (gateway_dir,) if gateway_dir is not None else ()
        self.gateway = (
            Theme(base, label=f"gateway theme {gateway_dir}", builtin=shared)
            if gateway_dir is not None
            else self.builtin
        )
        self._sites = {
            name: Theme((directory, *base), label=f"site {name}: theme {directory}", builtin=shared)
            for name, directory in (site_dirs or {}).items()
        }

    def theme(self, site: str | None = None) -> Theme:
        """The theme of ``site`` (a site file's name), else the gateway's."""
        if site is None:
            return self.gateway
        return self._sites.get(site, self.gateway)


# --- validation (gateway config check, every reload) -----------------------------------------


def check_theme(directory: Path, below: Sequence[Path] = ()) -> list[ConfigIssue]:
    """Every problem of the theme in ``directory`` that can be found without rendering: template
    syntax errors and unknown filters (``file:line``), templates it names in ``extends``,
    ``include`` or ``import`` that neither it, the themes ``below`` it nor the built-in one
    have, and unreadable message files."""
    issues: list[ConfigIssue] = []
    env = _environment(_override_loader((directory, *below)), Undefined, sandboxed=True)
    known = set(env.list_templates())
    for path in theme_files(directory):
        if path.parent.name == MESSAGES_DIR and path.suffix == ".json":
            continue
        name = path.relative_to(directory).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(str(path), "", f"cannot read: {exc.__class__.__name__}"))
            continue
        try:
            tree = env.parse(source, name, str(path))
            env.compile(tree, name, str(path))
        except TemplateSyntaxError as exc:
            issues.append(
                ConfigIssue(f"{path}:{exc.lineno}", "", f"template syntax error: {exc.message}")
            )
            continue
        for lineno, referenced in _references(tree):
            if referenced not in known:
                issues.append(
                    ConfigIssue(
                        f"{path}:{lineno}",
                        "",
                        f"no template {referenced!r} in this theme"
                        + (", the gateway's" if below else "")
                        + " or the built-in one",
                    )
                )
    read_messages(directory, issues)
    return issues


def _references(tree: nodes.Template) -> Iterator[tuple[int, str]]:
    """(line, name) of every template named by a constant in extends/include/import."""
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        assert isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport)
        target = node.template
        # A computed name, or a list to choose from, is only known when rendering.
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            yield node.lineno, target.value
