"""Deterministic, valid image files for the sandbox CDN (solid-colour JPEG or PNG per media id)."""

from __future__ import annotations

import mimetypes
import struct
import zlib
from functools import lru_cache

MAX_SIDE = 5760  # Shopify's ImageTransformInput bounds


def image_dimensions(media_id: int) -> tuple[int, int]:
    """Return the (width, height) the sandbox reports and serves for an image."""
    return 640 + (media_id % 5) * 160, 480 + (media_id % 3) * 120


def content_type_for(filename: str, fmt: str | None = None) -> str:
    """Return the MIME type for a file name, or for an explicit `format` (jpg, png, webp)."""
    if fmt:
        filename = f"x.{fmt}"
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def image_bytes(
    media_id: int, filename: str, width: int | None = None, height: int | None = None, fmt: str | None = None
) -> bytes:
    """Return the file served for a media: PNG for .png (or format=png), a JPEG otherwise."""
    full_w, full_h = image_dimensions(media_id)
    w = max(1, min(width or full_w, MAX_SIDE))
    h = max(1, min(height or full_h, MAX_SIDE))
    kind = (fmt or filename.rsplit(".", 1)[-1]).lower()
    if kind == "png":
        return _png(media_id, w, h)
    # Formats we cannot encode (webp, gif...) get JPEG bytes: tests only need stable, valid files.
    return _jpeg(media_id, w, h)


def _colour(media_id: int) -> tuple[int, int, int]:
    return 40 + (media_id * 37) % 180, 40 + (media_id * 73) % 180, 40 + (media_id * 151) % 180


@lru_cache(maxsize=512)
def _png(media_id: int, width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + bytes(_colour(media_id)) * width
    raw = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    text = f"Comment\x00shopify-sandbox media {media_id}".encode()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", text) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nbits = 0

    def write(self, value: int, nbits: int) -> None:
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.nbits += 1
            if self.nbits == 8:
                self._flush_byte()

    def write_zeros(self, nbits: int) -> None:
        while nbits and self.nbits:
            self.write(0, 1)
            nbits -= 1
        self.out += bytes(nbits // 8)  # whole zero bytes need no stuffing
        self.write(0, nbits % 8)

    def _flush_byte(self) -> None:
        self.out.append(self.acc)
        if self.acc == 0xFF:
            self.out.append(0x00)  # JPEG byte stuffing
        self.acc = 0
        self.nbits = 0

    def finish(self) -> bytes:
        while self.nbits:
            self.write(1, 1)  # pad the last byte with 1-bits, as the spec requires
        return bytes(self.out)


@lru_cache(maxsize=512)
def _jpeg(media_id: int, width: int, height: int) -> bytes:
    # A baseline greyscale JPEG of one flat tone: every 8x8 block has only a DC term,
    # so two 2-bit Huffman codes suffice and the file stays a few KB at any size.
    grey = sum(_colour(media_id)) // 3
    dc = grey - 128  # with a quantiser of 8 the flat block's DC coefficient is exactly this
    category = abs(dc).bit_length()
    dc_symbols = [0] if category == 0 else [0, category]
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    comment = f"shopify-sandbox media {media_id}".encode()
    dqt = b"\x00" + bytes([8] * 64)
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    counts_dc = bytes([0, len(dc_symbols)] + [0] * 14)
    dht_dc = b"\x00" + counts_dc + bytes(dc_symbols)
    dht_ac = b"\x10" + bytes([0, 1] + [0] * 14) + b"\x00"  # only EOB
    sos = b"\x01\x01\x00\x00\x3f\x00"
    bits = _BitWriter()
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    # First block: DC difference = dc (code 01 + magnitude bits) then EOB (00).
    if category:
        bits.write(0b01, 2)
        bits.write(dc if dc > 0 else dc + (1 << category) - 1, category)
    else:
        bits.write(0b00, 2)
    bits.write(0b00, 2)
    # Every later block repeats the same DC (difference 0, code 00) then EOB (00).
    bits.write_zeros(4 * (blocks - 1))
    entropy = bits.finish()
    return (
        b"\xff\xd8"
        + _segment(0xE0, jfif)
        + _segment(0xFE, comment)
        + _segment(0xDB, dqt)
        + _segment(0xC0, sof)
        + _segment(0xC4, dht_dc)
        + _segment(0xC4, dht_ac)
        + _segment(0xDA, sos)
        + entropy
        + b"\xff\xd9"
    )
