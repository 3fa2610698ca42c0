"""Cloudflare R2 hook: the amazon provider's S3Hook, configured for R2 from one aws connection.

It implements include.statistics_export.protocols.ObjectStore, everything the export does with the bucket.
The hot path (every object PUT, the staged catalogs' GETs, and the listings: one per Parquet part, so one
per small shop of a packed unit) goes through obstore's S3Store, a Rust client spending about a tenth of
boto3's CPU per request; it is built from the same connection, read by S3Hook. Deleting and presigning (a
few requests a day) stay on boto3.

Writes wait without a thread each: R2 answers tens of milliseconds later, so a worker is bound by how many
requests it keeps in flight, not by its CPU. Every PUT is a coroutine (obstore's async API) on one event loop
per process, at most ``max_in_flight`` of a hook's at once; :meth:`R2Hook.start_puts` hands back one future for a whole set of objects at once.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import obstore
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.config import Config
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from export_hooks.background_loop import BackgroundLoop, SharedGate
from export_hooks.errors import ExportError, PermanentError, TransientError

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig, RetryConfig

# Retries for 5xx, SlowDown and timeouts, with botocore's capped exponential backoff. The connection
# extra's ``config_kwargs`` overrides any of these (e.g. a shorter read_timeout or more attempts).
DEFAULT_CLIENT_CONFIG: dict[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 5},
    "connect_timeout": 10,
    "read_timeout": 60,
}
# What R2 answers when the access key id or the secret is wrong, or the token lacks the bucket.
CREDENTIAL_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "Unauthorized"}
)
# The whole of one request may take this many read timeouts (a 20 MB image on a slow link), never less.
TOTAL_TIMEOUT_READ_TIMEOUTS = 5
# Objects per listing request (S3's maximum page).
LIST_PAGE = 1000
# What obstore's error text says of the answer: S3's XML error code and message, the HTTP status, the retries.
_ERROR_CODE = re.compile(r"<Code>([^<]{1,64})</Code>")
_ERROR_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")
_STATUS = re.compile(r"status code: (\d{3})")
_RETRIES = re.compile(r"\bretries: (\d+)")


# Writes a hook keeps in flight unless told otherwise (the export sets STATISTICS_EXPORT_STORE_IN_FLIGHT).
DEFAULT_MAX_IN_FLIGHT = 64


class R2WriteError(TransientError):
    """An object could not be written to R2, after the client's retries."""


class R2ReadError(TransientError):
    """An object could not be read from R2, after the client's retries."""


class R2CredentialsError(PermanentError):
    """R2 rejected the connection's credentials: the task fails at once, retrying would not help."""


def _retries_of(retries: dict[str, Any]) -> int:
    """Return how many times a request is retried after its first try, as botocore reads its ``retries``."""
    if "total_max_attempts" in retries:
        return max(0, int(retries["total_max_attempts"]) - 1)
    return max(0, int(retries.get("max_attempts", 0)))  # botocore's max_attempts counts the retries only


def _answer_of(exc: Exception) -> tuple[str, str, int]:
    """Return (code, message, attempts) of a failed obstore request, from its text (never the text itself:
    S3 echoes the access key id in some error bodies)."""
    text = str(exc)
    code = _ERROR_CODE.search(text) or _STATUS.search(text)
    message = _ERROR_MESSAGE.search(text)
    retries = _RETRIES.search(text)
    return (
        code.group(1) if code else type(exc).__name__,
        message.group(1) if message else "",
        int(retries.group(1)) + 1 if retries else 1,
    )


class R2Hook(S3Hook):
    """
    Write objects to one Cloudflare R2 bucket through the S3 API.

    Connection (conn_type ``aws``): login/password are the access key id and secret; extra holds
    ``endpoint_url``, ``region_name`` (``auto`` on R2), the bucket in ``service_config.s3.bucket_name``,
    optionally ``public_base_url`` (a custom domain serving the bucket) and ``config_kwargs`` (botocore
    Config options over :data:`DEFAULT_CLIENT_CONFIG`, e.g. ``{"retries": {"mode": "standard",
    "max_attempts": 8}, "read_timeout": 30}``).

    :param r2_conn_id: the Airflow connection id.
    :param max_pool_connections: HTTP connections the boto3 client keeps; size it to the thread pool using it.
    :param max_in_flight: the most writes of this hook in flight at once (each holds a connection, no thread).
    """

    conn_name_attr = "r2_conn_id"
    default_conn_name = "r2_default"
    hook_name = "Cloudflare R2"

    def __init__(
        self,
        r2_conn_id: str = default_conn_name,
        *,
        max_pool_connections: int = 10,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        **kwargs: Any,
    ):
        if max_pool_connections < 1:
            raise ValueError(f"max_pool_connections must be at least 1, got {max_pool_connections}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        # No explicit config here: the provider then reads config_kwargs from the extra, merged in `config`.
        super().__init__(aws_conn_id=r2_conn_id, **kwargs)
        self.r2_conn_id = r2_conn_id
        self.max_pool_connections = max_pool_connections
        self.max_in_flight = max_in_flight
        # One bound over the writes whichever loop awaits them: the writes' loop, and the downloads' loop for the
        # image copies.
        self._gate = SharedGate(max_in_flight)
        self._refusal: str | None = None

    @property
    def config(self) -> Config:
        """Return the botocore config: defaults, then the extra's config_kwargs, then what R2 requires."""
        return (
            Config(**DEFAULT_CLIENT_CONFIG)
            .merge(self.conn_config.botocore_config or Config())
            .merge(
                Config(
                    # boto3 >= 1.36 sends checksum modes R2 rejects; only send what the operation requires.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    # R2 accepts SigV4 only; without this botocore presigns with the legacy query signature.
                    signature_version="s3v4",
                    max_pool_connections=self.max_pool_connections,
                )
            )
        )

    @cached_property
    def bucket(self) -> str:
        """Return the bucket named in the connection's ``service_config.s3.bucket_name``."""
        bucket = self.service_config.get("bucket_name")
        if not bucket:
            raise ValueError(
                f"Connection {self.r2_conn_id!r} has no bucket: set service_config.s3.bucket_name in its extra"
            )
        return bucket

    @cached_property
    def _extra(self) -> dict[str, Any]:
        return dict(self.conn_config.extra_config or {})

    @cached_property
    def _endpoint_url(self) -> str:
        endpoint = self.conn_config.endpoint_url or self._extra.get("endpoint_url")
        if not endpoint:
            raise ValueError(f"Connection {self.r2_conn_id!r} has no endpoint_url in its extra")
        return str(endpoint).rstrip("/")

    @cached_property
    def client(self) -> Any:
        """Return the boto3 S3 client: listing and deleting, off the hot path (see :attr:`store`)."""
        return self.get_conn()

    @cached_property
    def store(self) -> S3Store:
        """Return the obstore client of the hot path, configured from the same connection as :attr:`client`.

        Credentials come from the hook's boto3 session (login/password, or whatever the connection
        resolves to), the endpoint, region and bucket from its extra, the retries and timeouts from
        :attr:`config`. No checksum algorithm is set, so no ``x-amz-checksum-*`` header is ever sent (R2
        rejects some); HTTP (not HTTPS) is allowed only for an ``http://`` endpoint (the local stand-ins).
        """
        credentials = self.get_credentials()
        config = self.config
        retries = _retries_of(config.retries or {})
        read_timeout = float(config.read_timeout)
        client_options: ClientConfig = {
            "connect_timeout": timedelta(seconds=float(config.connect_timeout)),
            "read_timeout": timedelta(seconds=read_timeout),
            "timeout": timedelta(seconds=TOTAL_TIMEOUT_READ_TIMEOUTS * read_timeout),
            # Every write in flight keeps its connection for the next one.
            "pool_max_idle_per_host": str(max(self.max_pool_connections, self.max_in_flight)),
        }
        if urlsplit(self._endpoint_url).scheme == "http":
            client_options["allow_http"] = True
        retry_config: RetryConfig = {
            "max_retries": retries,
            # As botocore's standard mode: capped exponential backoff with jitter.
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=20), "base": 2},
            "retry_timeout": timedelta(seconds=max(180.0, (retries + 1) * TOTAL_TIMEOUT_READ_TIMEOUTS * read_timeout)),
        }
        session_token = {"token": credentials.token} if credentials.token else {}
        return S3Store(
            self.bucket,
            endpoint=self._endpoint_url,
            region=self.conn_config.region_name or "auto",
            access_key_id=credentials.access_key,
            secret_access_key=credentials.secret_key,
            virtual_hosted_style_request=False,
            **session_token,
            client_options=client_options,
            retry_config=retry_config,
        )

    def open_object(self, key: str) -> BinaryIO:
        """Return a stream of an object's bytes; raise FileNotFoundError naming the key when it is absent.

        The object is read whole, in one GET: the staged catalogs are one batch each (a few hundred KB).
        """
        try:
            data = obstore.get(self.store, key).bytes()
        except FileNotFoundError:  # obstore's NotFoundError is one
            raise FileNotFoundError(f"No object {key!r} in R2 bucket {self.bucket!r}") from None
        except ObstoreError as exc:
            raise self._failure(exc, key, writing=False) from None
        return io.BytesIO(memoryview(data))

    def keys_under(self, prefix: str) -> Iterator[str]:
        """Yield the keys under the folder ``prefix`` (it ends with '/'), one listing request per 1,000."""
        for item in self._listing(prefix):
            yield item["path"]

    def etags_under(self, prefix: str, start_after: str = "") -> dict[str, str]:
        """Return {key: ETag} of the objects under the folder ``prefix`` (after ``start_after``), one listing
        request per 1,000 objects."""
        return {item["path"]: item["e_tag"] or "" for item in self._listing(prefix, start_after)}

    def modified_under(self, prefix: str) -> dict[str, datetime]:
        """Return {key: LastModified} (aware UTC) of the objects under the folder ``prefix``."""
        return {item["path"]: item["last_modified"] for item in self._listing(prefix)}

    def _listing(self, prefix: str, start_after: str = "") -> Iterator[ObjectMeta]:
        # obstore lists whole path segments: a prefix that is not a folder would silently list nothing of it.
        if not prefix.endswith("/"):
            raise ValueError(f"A listing prefix must be a folder ending with '/', got {prefix!r}")
        try:
            for chunk in obstore.list(self.store, prefix, offset=start_after or None, chunk_size=LIST_PAGE):
                yield from chunk
        except (ObstoreError, FileNotFoundError) as exc:  # no such bucket: obstore's NotFoundError, only the latter
            raise self._failure(exc, prefix, writing=False) from None

    def presigned_get_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """Return a GET URL of one object, signed now for ``expires_in`` seconds (R2 allows up to 7 days).

        Nothing is stored: each call signs afresh. The URL carries the access key id, as every SigV4 URL
        does, and a signature; never the secret.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete these objects (in requests of at most 1,000 keys, as S3 allows)."""
        if keys:
            self.delete_objects(self.bucket, list(keys))

    def object_url(self, key: str) -> str:
        """Return the URL of an object: under ``public_base_url`` when configured, else the endpoint's."""
        base = self._extra.get("public_base_url")
        if base:
            return f"{str(base).rstrip('/')}/{key}"
        return f"{self._endpoint_url}/{self.bucket}/{key}"

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object and wait for it (see :meth:`put_object_async`)."""
        self.start_puts([(key, body, content_type)]).result()

    def start_puts(self, objects: Sequence[tuple[str, bytes, str]]) -> Future[None]:
        """Start writing these objects, each ``(key, body, content_type)``, and return at once: a future done
        when every one has been written or has failed, raising the first failure (in the objects' order).

        At most ``max_in_flight`` writes of this hook are in flight at once, whatever the calls, on the process's
        one event loop of writes: waiting for R2 holds no thread. One hand-over to the loop per call, and a
        coroutine per write in flight, not per object: the objects' number costs no more than their PUTs.
        """
        self.store  # noqa: B018 - built here, in the caller's thread: it reads the connection and the credentials
        return WRITES.submit(self._put_all(list(objects)))

    async def _put_all(self, objects: list[tuple[str, bytes, str]]) -> None:
        queue = iter(enumerate(objects))  # shared by the writers: each takes the next object
        failures: dict[int, Exception] = {}

        async def writer() -> None:
            for index, (key, body, content_type) in queue:
                try:
                    await self.put_object_async(key, body, content_type)
                except Exception as exc:  # noqa: BLE001 - every write ends before the first failure is raised
                    failures[index] = exc

        await asyncio.gather(*(writer() for _ in range(min(self.max_in_flight, len(objects)))))
        if failures:
            raise failures[min(failures)]

    async def put_object_async(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object from a coroutine on any event loop, at most ``max_in_flight`` of this hook's at once
        whichever loops await them (no ACL, no tagging, no KMS, no checksum header: R2 implements none of them).

        5xx, SlowDown, timeouts and dropped connections are retried with backoff by the client (the
        connection's ``retries``); refused credentials raise :class:`R2CredentialsError` at once, and
        every later write of this hook too; any other failure :class:`R2WriteError` naming the key.
        """
        async with self._gate:
            if self._refusal is not None:
                # Once R2 has refused the credentials, the batch's other writes would only be refused too.
                raise R2CredentialsError(self._refusal)
            try:
                await obstore.put_async(self.store, key, body, attributes={"Content-Type": content_type})
            except (ObstoreError, FileNotFoundError) as exc:  # obstore's NotFoundError (no such bucket): the latter
                raise self._failure(exc, key, writing=True) from None

    def _failure(self, exc: Exception, key: str, *, writing: bool) -> ExportError:
        """Return the error to raise for a request that failed after the client's retries.

        :class:`R2CredentialsError` (remembered, so the hook's later writes fail without a request) when R2
        refused the connection's credentials, else :class:`R2WriteError` / :class:`R2ReadError` naming the
        key, the bucket, the connection, the attempts and R2's code. Raise it "from None": obstore's text
        holds the error body, where S3 may echo the access key id.
        """
        code, message, attempts = _answer_of(exc)
        verb, direction = ("Writing", "to") if writing else ("Reading", "from")
        if code in CREDENTIAL_ERRORS or isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
            self._refusal = (
                f"R2 refused the credentials of connection {self.r2_conn_id!r} for bucket {self.bucket!r} "
                f"({code}) {verb.lower()} {key!r}: check the access key id and secret in the connection"
            )
            return R2CredentialsError(self._refusal)
        error = R2WriteError if writing else R2ReadError
        return error(
            f"{verb} {key!r} {direction} R2 bucket {self.bucket!r} (connection {self.r2_conn_id!r}) failed "
            f"after {attempts} attempt(s): {code}: {message}"
        )


def _new_writes_loop() -> asyncio.AbstractEventLoop:
    # uvloop (Airflow's API server already depends on it) spends about a third less CPU per write than asyncio's
    # own loop (bench/README.md, "R2's latency"); without it, asyncio's loop does the same work.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# The event loop every write of this process awaits on.
WRITES = BackgroundLoop("r2-writes", _new_writes_loop)
