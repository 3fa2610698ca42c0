"""Cloudflare R2 hook: the amazon provider's S3Hook, configured for R2 from one aws connection."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.config import Config


class R2Hook(S3Hook):
    """
    Write objects to one Cloudflare R2 bucket through the S3 API.

    Connection (conn_type ``aws``): login/password are the access key id and secret; extra holds
    ``endpoint_url``, ``region_name`` (``auto`` on R2), the bucket in ``service_config.s3.bucket_name``
    and, optionally, ``public_base_url`` (a custom domain serving the bucket).

    :param r2_conn_id: the Airflow connection id.
    :param max_pool_connections: HTTP connections the client keeps; size it to the thread pool using it.
    """

    conn_name_attr = "r2_conn_id"
    default_conn_name = "r2_default"
    hook_name = "Cloudflare R2"

    def __init__(self, r2_conn_id: str = default_conn_name, *, max_pool_connections: int = 10, **kwargs: Any):
        if max_pool_connections < 1:
            raise ValueError(f"max_pool_connections must be at least 1, got {max_pool_connections}")
        config = Config(
            # boto3 >= 1.36 sends checksum modes R2 rejects; only send what the operation requires.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max_pool_connections,
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
        )
        super().__init__(aws_conn_id=r2_conn_id, config=config, **kwargs)
        self.r2_conn_id = r2_conn_id

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
    def client(self):
        """Return the one boto3 S3 client this hook uses for every object."""
        return self.get_conn()

    def object_url(self, key: str) -> str:
        """Return the URL of an object: under ``public_base_url`` when configured, else the endpoint's."""
        base = self._extra.get("public_base_url")
        if base:
            return f"{str(base).rstrip('/')}/{key}"
        return f"{self._endpoint_url}/{self.bucket}/{key}"

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object (no ACL, no tagging, no KMS: R2 implements none of them)."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
