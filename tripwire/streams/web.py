"""The worker's web server: where it listens, who may read it, and what it serves.

``/status`` and ``/status.json`` show open alerts with their evidence, reference paths and the
host name, and ``/metrics`` the worker's internals, so the server is closed unless configured open:

* it listens on ``[worker] web_bind`` = ``127.0.0.1`` by default; another address (``0.0.0.0``,
  a host's address) is the explicit opt-in to the network;
* ``[worker] web_config`` names a YAML file in the format of Prometheus exporters' web config
  (``--web.config.file``), of which tripwire reads::

      tls_server_config:        # serve HTTPS
        cert_file: server.crt   # relative paths: to this file's folder
        key_file: server.key
      basic_auth_users:         # every page asks for one of these users
        alice: $2y$10$...       # bcrypt hash, e.g. `htpasswd -nBC 10 "" | tr -d ':\\n'`

  and refuses any other key rather than ignore a protection the operator expects;
* Faust's own pages (``/router/``, ``/table/``, ``/graph/``, statistics) are off unless
  ``[worker] web_faust_pages = true``.

:func:`app_options` gives the ``faust.App`` keyword arguments, :func:`install_pages` adds
tripwire's pages once the worker exists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from tripwire.config import ConfigError, WorkerSettings

__all__ = ["WebConfig", "BasicAuth", "app_options", "install_pages", "load_web_config"]

log = logging.getLogger("tripwire.web")

FAUST_PAGE_SETTINGS = ("web_router_enabled", "web_tables_enabled", "web_graph_enabled", "web_stats_enabled",
                       "web_metrics_enabled")
_TLS_KEYS = {"cert_file", "key_file"}
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_CACHE_LIMIT = 1024  # remembered successful logins: bcrypt takes ~0.1 s per check, per scrape


@dataclass(frozen=True)
class WebConfig:
    """What a web config file asks for: TLS files, and bcrypt hashes by user."""

    cert_file: Path | None = None
    key_file: Path | None = None
    users: dict[str, bytes] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check a web config file; a ConfigError names the file and the key that is wrong."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe_load: plain data, no tags run
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such web config file (worker.web_config)") from None
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not a readable YAML web config: {error}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a web config is a mapping with tls_server_config and/or basic_auth_users")
    unknown = set(data) - {"tls_server_config", "basic_auth_users"}
    if unknown:
        raise ConfigError(f"{path}: {', '.join(sorted(unknown))}: not supported by tripwire (it reads "
                          "tls_server_config: cert_file, key_file and basic_auth_users)")
    cert_file = key_file = None
    tls = data.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict) or set(tls) != _TLS_KEYS:
            raise ConfigError(f"{path}: tls_server_config takes exactly cert_file and key_file"
                              + (f", got {', '.join(sorted(tls))}" if isinstance(tls, dict) else ""))
        cert_file, key_file = (_file(path, f"tls_server_config.{key}", tls[key]) for key in ("cert_file", "key_file"))
    users: dict[str, bytes] = {}
    raw_users = data.get("basic_auth_users")
    if raw_users is not None:
        if not isinstance(raw_users, dict) or not raw_users:
            raise ConfigError(f"{path}: basic_auth_users is a mapping of user name to bcrypt hash")
        for user, hashed in raw_users.items():
            if not isinstance(user, str) or not user or ":" in user:
                raise ConfigError(f"{path}: basic_auth_users: {user!r} is not a user name (non-empty, no ':')")
            if not isinstance(hashed, str) or not hashed.startswith(_BCRYPT_PREFIXES) or len(hashed) != 60:
                raise ConfigError(f"{path}: basic_auth_users.{user} must be a bcrypt hash ($2y$..., 60 characters), "
                                  "never the password itself")
            users[user] = hashed.encode()
    return WebConfig(cert_file, key_file, users)


def _file(config: Path, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{config}: {key} must be a file path")
    found = (config.parent / value).resolve()
    if not found.is_file():
        raise ConfigError(f"{config}: {key}: no such file {found}")
    return found


def server_ssl_context(web: WebConfig) -> ssl.SSLContext | None:
    """A TLS 1.2+ server context for the config's certificate and key, or None without TLS."""
    if not web.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(web.cert_file), str(web.key_file))
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"tls_server_config: cannot load {web.cert_file} with {web.key_file}: {error}") from None
    return context


class BasicAuth:
    """HTTP basic authentication against bcrypt hashes, as an aiohttp middleware.

    bcrypt runs in a thread (it takes ~0.1 s and would stall the worker's event loop); an unknown
    user costs the same check as a known one, so the time taken does not tell which users exist.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self._decoy = next(iter(self.users.values()))
        self._accepted: set[bytes] = set()

    async def check(self, header: str | None) -> str | None:
        """The user a ``Authorization: Basic ...`` header authenticates, or None."""
        import bcrypt

        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        token = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed or b""])).digest()
        if hashed is not None and token in self._accepted:
            return user
        matches = await asyncio.get_running_loop().run_in_executor(
            None, bcrypt.checkpw, password.encode(), hashed or self._decoy)
        if hashed is None or not matches:
            return None
        if len(self._accepted) >= _CACHE_LIMIT:
            self._accepted.clear()
        self._accepted.add(token)
        return user

    def middleware(self) -> Callable[..., Awaitable[Any]]:
        from aiohttp import web

        @web.middleware
        async def basic_auth(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            if await self.check(request.headers.get("Authorization")) is None:
                return web.Response(status=401, text="401 Unauthorized\n",
                                    headers={"WWW-Authenticate": 'Basic realm="tripwire", charset="UTF-8"'})
            return await handler(request)

        return basic_auth


def app_options(settings: WorkerSettings) -> dict[str, Any]:
    """``faust.App`` keyword arguments for the web server of a ``[worker]`` table."""
    port = settings.web_port
    options: dict[str, Any] = {
        "web_enabled": port > 0,
        "web_port": port or 6066,
        "web_bind": settings.web_bind,
        **{name: settings.web_faust_pages for name in FAUST_PAGE_SETTINGS},
    }
    if not port:
        return options
    web = load_web_config(settings.web_config) if settings.web_config else WebConfig()
    options["web_ssl_context"] = server_ssl_context(web)
    if web.users:
        options["web_application_options"] = {"middlewares": [BasicAuth(web.users).middleware()]}
    scheme = "https" if web.tls else "http"
    protection = ", ".join(p for p, on in (("TLS", web.tls), ("basic auth", bool(web.users))) if on) or "no TLS, no auth"
    if not _loopback(settings.web_bind) and not web.users:
        log.warning("web server on %s://%s:%d is open to the network without authentication (worker.web_bind; "
                    "set basic_auth_users in worker.web_config)", scheme, settings.web_bind, port)
    else:
        log.info("web server on %s://%s:%d (%s)", scheme, settings.web_bind, port, protection)
    return options


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def install_pages(app: Any, worker: Any, settings: WorkerSettings) -> None:
    """tripwire's pages: ``/metrics`` (Prometheus), ``/status`` and ``/status.json`` (the live board)."""
    if not settings.web_port:
        return
    from tripwire.streams.metrics import CONTENT_TYPE
    from tripwire.streams.status import PAGE

    @app.page("/metrics")
    async def metrics(view: Any, _request: Any) -> Any:
        # In the headers: aiohttp refuses a content_type argument with a charset.
        return view.bytes(worker.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/status")
    async def status(view: Any, _request: Any) -> Any:
        return view.html(PAGE)

    @app.page("/status.json")
    async def status_json(view: Any, _request: Any) -> Any:
        return view.json(worker.status.snapshot(worker.open_alerts()))
