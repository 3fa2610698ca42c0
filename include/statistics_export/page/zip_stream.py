"""A ZIP of objects streamed from the bucket as it is built: one object's chunk in memory at a time."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

CHUNK = 256 * 1024


class ObjectReader(Protocol):
    """What streaming a ZIP needs of the bucket."""

    def open_object(self, key: str) -> BinaryIO:
        """Return a stream of an object's bytes."""
        ...


class _Sink:
    """A write-only, non-seekable file: zipfile then writes data descriptors and never seeks back."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def stream_zip(store: ObjectReader, entries: Iterable[tuple[str, str]]) -> Iterator[bytes]:
    """Yield a ZIP archive's bytes holding each ``(name in the archive, object key)``, read chunk by chunk."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, key in entries:
            with store.open_object(key) as source, archive.open(name, mode="w", force_zip64=True) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    if data := sink.drain():
                        yield data
            if data := sink.drain():
                yield data
    if data := sink.drain():
        yield data
