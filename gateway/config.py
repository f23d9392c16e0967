"""The gateway's settings, read from the environment once, at start.

=============================  ====================================  ==============================================
variable                       default                               what it sets
=============================  ====================================  ==============================================
``EMOFUSE_ENV``                ``development``                       ``production`` requires ``SECRET_KEY`` and
                                                                     marks session cookies Secure
``EMOFUSE_DATA_DIR``           ``var``                               uploads, outputs, the SQLite database and the
                                                                     generated secret key live under it
``DATABASE_URL``               ``sqlite:///DATA_DIR/emofuse.sqlite`` SQLAlchemy URL; ``postgresql://...`` uses
                                                                     psycopg 3
``SECRET_KEY``                 generated, kept in                    signs session cookies and CSRF tokens; at least
                               ``DATA_DIR/secret_key`` (mode 0600)   32 characters; required in production
``TRITON_URL``                 unset                                 Triton's gRPC ``host:port``; when set,
                                                                     ``/readyz`` checks its models are READY
``REDIS_URL``                  unset                                 the job queue (RQ); unset: embedded jobs
``EMOFUSE_MAX_UPLOAD_MB``      ``2048``                              largest request body, in MiB
``EMOFUSE_MAX_DURATION_S``     ``1800``                              longest recording accepted, in seconds
``EMOFUSE_HTTPS``              ``0``                                 ``1``: the site is served over HTTPS (Secure
                                                                     cookies outside production too)
``EMOFUSE_PROXY_HOPS``         ``0``                                 reverse proxies in front whose
                                                                     ``X-Forwarded-For``/``-Proto`` are trusted
``EMOFUSE_MIGRATE``            ``1``                                 ``0``: do not apply database migrations at start
``EMOFUSE_MODEL_REPOSITORY``   ``model_repository``                  the served Triton repository, whose model cards
                                                                     ``/about`` reads
``EMOFUSE_METRICS_TOKEN``      unset                                 when set, ``/metrics`` answers only requests
                                                                     with ``Authorization: Bearer TOKEN``
``EMOFUSE_SAMPLE_VIDEO``       unset                                 a video a user with no analyses can have
                                                                     analysed in one click (``emofuse serve`` sets it)
=============================  ====================================  ==============================================

Sign-in limits (failed attempts per 15 minutes: 5 per account, 20 per client address; sign-ups:
10 per address per hour) are fields of :class:`Config` with those defaults. Tests and ``emofuse
serve`` build a :class:`Config` directly or from a mapping::

    config = Config.from_env({"EMOFUSE_DATA_DIR": "/tmp/emofuse"})
    app = create_app(dataclasses.replace(config, signin_max_per_account=3))
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["Config", "DEFAULT_DATA_DIR", "SECRET_KEY_FILE", "kept_secret_key"]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("var")
SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32  # 32 hex characters are 128 bits: enough for an HMAC key
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Config:
    """Every setting the gateway reads; :meth:`from_env` is the usual way to make one."""

    data_dir: Path
    database_url: str
    secret_key: str
    env: str = "development"
    triton_url: str | None = None
    redis_url: str | None = None
    max_upload_bytes: int = 2048 * 2**20  # a 2 GB recording streams to disk; nothing larger is read
    max_duration_s: float = 1800.0  # 30 minutes: an hour of 3.6 s windows already takes minutes to judge
    https: bool = False
    proxy_hops: int = 0
    migrate: bool = True
    model_repository: Path = Path("model_repository")
    metrics_token: str | None = None  # a Prometheus server's bearer token; unset: /metrics is open
    sample_video: Path | None = None  # the server's own sample, offered to users with no analyses (gateway.sample)
    signin_max_per_account: int = 5  # guessing stays hopeless; a person mistyping five times waits
    signin_max_per_address: int = 20  # a shared office address may hold several people
    signin_window_s: int = 15 * 60
    signup_max_per_address: int = 10  # sign-up says whether an address is taken: slow down harvesting
    signup_window_s: int = 60 * 60
    readiness_timeout_s: float = 2.0  # a probe must answer before the orchestrator's own timeout

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        return self.production or self.https

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "users"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the settings; create the data directory and, outside production, the secret key file.

        Raises
        ------
        ConfigError
            A setting is invalid, or production runs without ``SECRET_KEY``.
        """
        environ = os.environ if environ is None else environ
        env = environ.get("EMOFUSE_ENV", "development").strip().lower() or "development"
        if env not in ("development", "production"):
            raise ConfigError(f"EMOFUSE_ENV is {env!r}; set it to 'development' or 'production'.")
        data_dir = Path(environ.get("EMOFUSE_DATA_DIR") or DEFAULT_DATA_DIR).absolute()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"EMOFUSE_DATA_DIR {str(data_dir)!r} cannot be created: {err.strerror}.") from err
        return cls(
            data_dir=data_dir,
            database_url=environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'emofuse.sqlite'}",
            secret_key=_secret_key(environ.get("SECRET_KEY"), data_dir, production=env == "production"),
            env=env,
            triton_url=environ.get("TRITON_URL") or None,
            redis_url=environ.get("REDIS_URL") or None,
            max_upload_bytes=_number(environ, "EMOFUSE_MAX_UPLOAD_MB", 2048, int) * 2**20,
            max_duration_s=_number(environ, "EMOFUSE_MAX_DURATION_S", 1800.0, float),
            https=_flag(environ, "EMOFUSE_HTTPS", False),
            proxy_hops=_number(environ, "EMOFUSE_PROXY_HOPS", 0, int, minimum=0),
            migrate=_flag(environ, "EMOFUSE_MIGRATE", True),
            model_repository=Path(environ.get("EMOFUSE_MODEL_REPOSITORY") or "model_repository"),
            metrics_token=environ.get("EMOFUSE_METRICS_TOKEN") or None,
            sample_video=Path(environ["EMOFUSE_SAMPLE_VIDEO"]).absolute() if environ.get("EMOFUSE_SAMPLE_VIDEO") else None,
        )


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    text = environ.get(name)
    if text is None:
        return default
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name} is {text!r}; set it to 1 or 0.")


def _number(environ: Mapping[str, str], name: str, default: float, kind: type, *, minimum: float = 1) -> float:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name} is {text!r}; set it to a number, e.g. {default}.") from None
    if value < minimum:
        raise ConfigError(f"{name} is {text!r}; it must be at least {minimum}.")
    return value


def _secret_key(given: str | None, data_dir: Path, *, production: bool) -> str:
    """``SECRET_KEY`` when set; otherwise, outside production, the key kept in the data directory."""
    if given:
        if len(given) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(f"SECRET_KEY has {len(given)} characters; use at least {MIN_SECRET_KEY_LENGTH}, "
                              "e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`.")  # fmt: skip
        return given
    if production:
        raise ConfigError("SECRET_KEY must be set when EMOFUSE_ENV=production; generate one with "
                          "`python -c 'import secrets; print(secrets.token_hex(32))'` and keep it secret.")  # fmt: skip
    return kept_secret_key(data_dir / SECRET_KEY_FILE)


def kept_secret_key(path: Path) -> str:
    """The key in ``path``, made on first use; readable by its owner only (``emofuse serve``
    makes it here before it starts the gateway's processes, and hands it to them).

    The key is written to a private temporary file and linked into place, so gunicorn workers
    starting together all end up with the same key and none reads a half-written one.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker linked its key first: use that one
        finally:
            temporary.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("secret key file %s was readable by others (mode %o); made it 0600", path, mode)
        path.chmod(0o600)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"The secret key in {path} is too short; delete the file to make a new one.")
    return key
