"""The web console at ``/console/``: server-rendered pages (Jinja2), htmx and server-sent events."""

from taskvpc.console.app import PREFIX, Console, wants_console

__all__ = ["PREFIX", "Console", "wants_console"]
