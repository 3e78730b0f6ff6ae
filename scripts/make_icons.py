"""Draws the Hearth icon (a hearth fire's flame on a dark rounded square) into extension/icons/icon-{N}.png.

The PNGs are committed so the build needs no image tools; to change the icon, edit this script and run it again:

    .venv/bin/python scripts/make_icons.py

Shapes are drawn as inside/outside masks at SUPERSAMPLE x the size and box-averaged down (anti-aliasing); the PNG is
written by hand with zlib, so numpy is the only dependency and the same script gives the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = (16, 32, 48, 128)
SUPERSAMPLE = 8

BACKGROUND = (0.16, 0.11, 0.09)  # warm charcoal
GLOW = (0.45, 0.16, 0.05)  # the ember light behind the fire
OUTER_BOTTOM, OUTER_TOP = (1.00, 0.52, 0.10), (0.90, 0.18, 0.08)  # orange at the base to red at the tip
INNER_BOTTOM, INNER_TOP = (1.00, 0.96, 0.70), (1.00, 0.78, 0.20)  # pale yellow core


def rounded_square(x, y, half, radius):
    """Signed distance to a square centred at 0 with rounded corners (negative inside)."""
    qx, qy = np.abs(x) - half + radius, np.abs(y) - half + radius
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - radius


def flame(x, y, base, height, width, lean):
    """Inside mask of a flame: round at `base`, widest a quarter of the way up, a pointed tip that bends by `lean`."""
    t = np.clip((base - y) / height, 0, 1)  # 0 at the base, 1 at the tip (y grows downward)
    half_width = width / 2 * np.sqrt(t) * (1 - t) ** 1.5 / (0.5 * 0.75**1.5)  # max of sqrt(t)(1-t)^1.5 is at t=1/4
    centre = lean * t**2
    return (y <= base) & (y >= base - height) & (np.abs(x - centre) <= half_width)


def over(image, mask, color):
    """Paints an opaque `color` over `image` (premultiplied RGBA) where `mask` holds."""
    image[mask] = np.concatenate([np.broadcast_to(color, mask.shape + (3,))[mask], np.ones((mask.sum(), 1))], axis=1)


def vertical(y, top, bottom, top_color, bottom_color):
    """A colour per pixel, blending from `top_color` at y=top to `bottom_color` at y=bottom."""
    s = np.clip((y - top) / (bottom - top), 0, 1)[..., None]
    return (1 - s) * np.array(top_color) + s * np.array(bottom_color)


def render(size: int) -> np.ndarray:
    """The icon as (size, size, 4) uint8 RGBA."""
    n = size * SUPERSAMPLE
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1  # sample centres in [-1, 1]; y grows downward
    image = np.zeros((n, n, 4))  # premultiplied RGBA
    glow = np.clip(1 - np.hypot(x, (y - 0.35) * 1.3) / 1.1, 0, 1)[..., None] ** 1.5
    over(image, rounded_square(x, y, 1.0, 0.45) <= 0, (1 - glow) * np.array(BACKGROUND) + glow * np.array(GLOW))
    over(image, flame(x, y, 0.72, 1.45, 1.05, 0.22), vertical(y, -0.73, 0.72, OUTER_TOP, OUTER_BOTTOM))
    over(image, flame(x, y, 0.72, 0.85, 0.58, 0.10), vertical(y, -0.13, 0.72, INNER_TOP, INNER_BOTTOM))
    image = image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).mean(axis=(1, 3))
    alpha = image[..., 3:]
    rgb = np.divide(image[..., :3], alpha, out=np.zeros_like(image[..., :3]), where=alpha > 0)
    return np.round(np.concatenate([rgb, alpha], axis=2) * 255).astype(np.uint8)


def png(rgba: np.ndarray) -> bytes:
    """Encodes (h, w, 4) uint8 as a PNG: 8-bit RGBA (colour type 6), no filtering, zlib level 9."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgba.shape
    rows = b"".join(b"\x00" + row.tobytes() for row in rgba)  # filter byte 0 (None) before each row
    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def main() -> None:
    out = ROOT / "extension" / "icons"
    out.mkdir(exist_ok=True)
    for size in SIZES:
        (out / f"icon-{size}.png").write_bytes(png(render(size)))
        print(f"wrote {out.relative_to(ROOT)}/icon-{size}.png")


if __name__ == "__main__":
    main()
