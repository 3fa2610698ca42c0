"""What the fault proxy injects and when: rules, hooks, the requests it saw, and S3's error bodies."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

CREDENTIAL_PATTERN = re.compile(r"Credential=([^/,\s]+)/")
ERROR_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided.",
    "AccessDenied": "Access Denied",
    "InvalidRequest": "The request was rejected.",
}


@dataclass(frozen=True)
class SeenRequest:
    """One request the proxy received: what it was and the status its client was answered (None: no answer)."""

    method: str
    bucket: str
    key: str
    access_key_id: str | None
    status: int | None


@dataclass
class Rule:
    """A fault applied to matching requests.

    ``action`` is ``error`` (answer ``status`` with an S3 XML ``code``), ``delay`` (hold the request
    ``seconds`` before forwarding it) or ``drop`` (close the connection without an answer). A request
    matches when its method, key prefix and access key id match the ones given (None matches all).
    The first ``skip`` matches go through untouched; then the rule applies ``times`` times (None: forever).
    """

    action: str
    method: str | None = None
    key_prefix: str | None = None
    access_key_id: str | None = None
    skip: int = 0
    times: int | None = None
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 0.0
    matched: int = 0
    applied: int = 0

    def __post_init__(self) -> None:
        if self.action not in ("error", "delay", "drop"):
            raise ValueError(f"unknown fault action {self.action!r}")

    def matches(self, method: str, key: str, access_key_id: str | None) -> bool:
        """Return whether a request is one this rule is about."""
        return (
            (self.method is None or self.method == method)
            and (self.key_prefix is None or key.startswith(self.key_prefix))
            and (self.access_key_id is None or self.access_key_id == access_key_id)
        )

    def take(self) -> bool:
        """Count one match and return whether the fault applies to it (call under the proxy's lock)."""
        self.matched += 1
        if self.matched <= self.skip or (self.times is not None and self.applied >= self.times):
            return False
        self.applied += 1
        return True


@dataclass
class Hook:
    """A callback run for the ``nth`` matching request (every one when ``nth`` is None).

    It runs in the proxy's handler thread once the S3 server has answered and before the answer is
    relayed, so the client waits until it returns: a test can act at an exact point of a batch.
    """

    callback: Callable[[SeenRequest], Any]
    nth: int | None
    method: str | None = "PUT"
    key_prefix: str | None = None
    matched: int = 0
    errors: list[BaseException] = field(default_factory=list)


def bucket_and_key(path: str) -> tuple[str, str]:
    """Return the bucket and object key a request path names."""
    # Path-style addressing, which boto3 uses for an IP endpoint such as the local one.
    parts = unquote(urlsplit(path).path).lstrip("/").split("/", 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def access_key_id_of(authorization: str | None, path: str) -> str | None:
    """Return the access key id a request was signed with (SigV4 header or presigned query), if any."""
    match = CREDENTIAL_PATTERN.search(authorization or "")
    if match:
        return match.group(1)
    credential = parse_qs(urlsplit(path).query).get("X-Amz-Credential")
    return credential[0].split("/", 1)[0] if credential else None


def error_xml(code: str, resource: str, access_key_id: str | None) -> bytes:
    """Return the XML error body S3 (and R2) answer with."""
    extra = ""
    if code == "InvalidAccessKeyId" and access_key_id:
        extra = f"<AWSAccessKeyId>{escape(access_key_id)}</AWSAccessKeyId>"  # S3 echoes the id back
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(ERROR_MESSAGES.get(code, code))}</Message>"
        f"<Resource>{escape(resource)}</Resource>{extra}<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()
