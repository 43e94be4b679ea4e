"""A bounded-timeout Redis connection and the clear error for every Redis failure."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from etl.core.config import Settings
from etl.core.errors import (
    ConfigError,
    OnlineStoreError,
)


def redis_client(settings: Settings):
    """A redis-py client for ``settings.redis_url`` with bounded timeouts and no retries:
    a Redis that is down or refuses us fails within ``redis_timeout_seconds``."""
    if not settings.redis_url:
        raise ConfigError("no Redis configured: set redis_url in config.toml or ALPHA_REDIS_URL")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = urlparse(settings.redis_url)
    timeout = float(settings.redis_timeout_seconds)
    kwargs = dict(
        host=url.hostname,
        port=url.port or 6379,
        db=int((url.path or "/").lstrip("/") or 0),
        username=unquote(url.username) if url.username and url.password else None,
        password=settings.redis_password or (unquote(url.password) if url.password else None),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )
    if url.scheme == "rediss":
        kwargs.update(ssl=True, ssl_ca_certs=settings.redis_ssl_ca_certs, ssl_certfile=settings.redis_ssl_certfile,
                      ssl_keyfile=settings.redis_ssl_keyfile)
    return redis.Redis(**kwargs)


def _where(settings: Settings) -> str:
    url = urlparse(settings.redis_url or "")
    return f"{url.scheme}://{url.hostname}:{url.port or 6379}{url.path or ''}"


def online_error(settings: Settings, exc: BaseException, doing: str) -> OnlineStoreError:
    """A clear OnlineStoreError for a redis-py exception: where, what failed, what to check."""
    import redis

    where = _where(settings)
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text:
        hint = ("Redis refused the credentials: check the password in redis_url or ALPHA_REDIS_PASSWORD "
                "(and the user name for ACL users)")
    elif isinstance(exc, redis.TimeoutError):
        hint = (f"no answer within {settings.redis_timeout_seconds:g} s (redis_timeout_seconds / ALPHA_REDIS_TIMEOUT_SECONDS): "
                "is the host reachable, is it a Redis port, does it expect TLS (rediss://)?")
    elif isinstance(exc, redis.ConnectionError):
        hint = ("cannot connect: is redis-server running there (redis-cli -h HOST -p PORT ping), "
                "is redis_url / ALPHA_REDIS_URL right, and for TLS the rediss:// scheme and redis_ssl_* files?")
    else:
        hint = "see the Redis error above"
    return OnlineStoreError(f"Redis online store at {where}: {doing} failed: {type(exc).__name__}: {text}. {hint}")


def store_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean the online store could not be reached or read: redis-py's
    (when it is installed; imported here, not at module import) and the OS's (connection
    refused, timeouts). Classified by class, never by module name."""
    try:
        import redis
    except ImportError:
        return (OSError,)
    return (redis.RedisError, OSError)


def _guard(settings: Settings, doing: str, fn):
    try:
        return fn()
    except store_errors() as exc:
        raise online_error(settings, exc, doing) from exc

