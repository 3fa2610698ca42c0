"""Cloudflare R2 hook: the amazon provider's S3Hook, configured for R2 from one aws connection.

It implements include.statistics_export.protocols.ObjectStore, everything the export does with the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, BinaryIO, cast

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from include.statistics_export.errors import ExportError, PermanentError

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


class R2WriteError(ExportError):
    """An object could not be written to R2, after botocore's retries."""


class R2CredentialsError(PermanentError):
    """R2 rejected the connection's credentials: the task fails at once, retrying would not help."""


class R2Hook(S3Hook):
    """
    Write objects to one Cloudflare R2 bucket through the S3 API.

    Connection (conn_type ``aws``): login/password are the access key id and secret; extra holds
    ``endpoint_url``, ``region_name`` (``auto`` on R2), the bucket in ``service_config.s3.bucket_name``,
    optionally ``public_base_url`` (a custom domain serving the bucket) and ``config_kwargs`` (botocore
    Config options over :data:`DEFAULT_CLIENT_CONFIG`, e.g. ``{"retries": {"mode": "standard",
    "max_attempts": 8}, "read_timeout": 30}``).

    :param r2_conn_id: the Airflow connection id.
    :param max_pool_connections: HTTP connections the client keeps; size it to the thread pool using it.
    """

    conn_name_attr = "r2_conn_id"
    default_conn_name = "r2_default"
    hook_name = "Cloudflare R2"

    def __init__(self, r2_conn_id: str = default_conn_name, *, max_pool_connections: int = 10, **kwargs: Any):
        if max_pool_connections < 1:
            raise ValueError(f"max_pool_connections must be at least 1, got {max_pool_connections}")
        # No explicit config here: the provider then reads config_kwargs from the extra, merged in `config`.
        super().__init__(aws_conn_id=r2_conn_id, **kwargs)
        self.r2_conn_id = r2_conn_id
        self.max_pool_connections = max_pool_connections
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
        """Return the one boto3 S3 client this hook uses for every object."""
        return self.get_conn()

    def open_object(self, key: str) -> BinaryIO:
        """Return a stream of an object's bytes; raise FileNotFoundError naming the key when it is absent."""
        try:
            return cast(BinaryIO, self.client.get_object(Bucket=self.bucket, Key=key)["Body"])
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"No object {key!r} in R2 bucket {self.bucket!r}") from None

    def keys_under(self, prefix: str) -> Iterator[str]:
        """Yield the keys that start with ``prefix``, page by page."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item["Key"]

    def etags_under(self, prefix: str, start_after: str = "") -> dict[str, str]:
        """Return {key: ETag} of the objects under ``prefix`` (after ``start_after``), one listing page per 1,000."""
        found: dict[str, str] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, StartAfter=start_after
        )
        for page in pages:
            for item in page.get("Contents", ()):
                found[item["Key"]] = str(item.get("ETag", ""))
        return found

    def presigned_get_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """Return a GET URL of one object, signed now for ``expires_in`` seconds (R2 allows up to 7 days).

        Nothing is stored: each call signs afresh. The URL carries the access key id, as every SigV4 URL
        does, and a signature; never the secret.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))

    def prefixes_under(self, prefix: str) -> list[str]:
        """Return the 'folders' directly under ``prefix``."""
        return list(self.list_prefixes(bucket_name=self.bucket, prefix=prefix, delimiter="/") or [])

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
        """Write one object (no ACL, no tagging, no KMS: R2 implements none of them)."""
        if self._refusal is not None:
            # Once R2 has refused the credentials, the batch's other writes would only be refused too.
            raise R2CredentialsError(self._refusal)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
            if code in CREDENTIAL_ERRORS:
                self._refusal = (
                    f"R2 refused the credentials of connection {self.r2_conn_id!r} for bucket {self.bucket!r} "
                    f"({code}) writing {key!r}: check the access key id and secret in the connection"
                )
                raise R2CredentialsError(self._refusal) from exc
            raise R2WriteError(
                f"Writing {key!r} to R2 bucket {self.bucket!r} (connection {self.r2_conn_id!r}) failed "
                f"after {attempts} attempt(s): {code}: {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise R2WriteError(
                f"Writing {key!r} to R2 bucket {self.bucket!r} (connection {self.r2_conn_id!r}) failed "
                f"after botocore's retries: {type(exc).__name__}: {exc}"
            ) from exc
