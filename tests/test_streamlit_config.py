"""The server's own settings (.streamlit/config.toml): localhost only, error types only, XSRF on (docs/faults.md)."""

from __future__ import annotations

import tomllib

from apptest import PROJECT

SETTINGS = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text())


def test_the_server_listens_on_localhost_and_shows_error_types_only():
    assert SETTINGS["server"]["address"] == "127.0.0.1"
    assert SETTINGS["client"]["showErrorDetails"] == "type"
    readme = (PROJECT / "README.md").read_text()
    assert "--server.address 0.0.0.0" in readme


def test_streamlit_config_keeps_xsrf_protection_on():
    """The lab has no login; XSRF protection (which needs CORS protection) must stay on."""
    server = SETTINGS.get("server", {})
    assert server.get("enableXsrfProtection") is True
    assert server.get("enableCORS", True) is True
