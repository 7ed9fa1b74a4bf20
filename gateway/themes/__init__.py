"""Pages and emails from Jinja2 templates: the built-in theme (``default/``) and the directories
that a gateway or a site lays over it (``theme_dir``). See ``theme.py``."""

from gateway.themes.mail import RenderedMail, render_mail
from gateway.themes.theme import Theme, Themes, check_theme, theme_files

__all__ = ["RenderedMail", "Theme", "Themes", "check_theme", "render_mail", "theme_files"]
