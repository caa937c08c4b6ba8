"""Opening images safely: one function every reader (dataset, validate, serving) goes through."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mlic.errors import DataError

DEFAULT_MAX_PIXELS = 50_000_000


def _to_rgb(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; grayscale, palette, RGBA (on white) and CMYK converted to RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[-1])
        return background
    return image.convert("RGB")


def decode_image(data: bytes | Path, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode fully (so truncation is found now, not in a worker later) with a pixel cap.

    Raises DataError naming the image: empty, not an image, truncated, or over the pixel cap.
    """
    if isinstance(data, Path):
        if not data.is_file():
            raise DataError("image file not found", file=data, fix="restore the file or remove it from the annotations")
        if data.stat().st_size == 0:
            raise DataError("image file is empty (0 bytes)", file=data, fix="replace or remove the image")
    elif not data:
        raise DataError("empty image data", file=name, fix="send the image bytes")
    previous_cap = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        source = data if isinstance(data, Path) else io.BytesIO(data)
        with Image.open(source) as image:
            if image.width * image.height > max_pixels:
                raise DataError(
                    f"image has {image.width}x{image.height} pixels, over the cap of {max_pixels}",
                    file=name,
                    fix="resize it, or raise data.max_image_pixels if it is trusted",
                )
            image.load()
            return _to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise DataError(f"image is too large ({exc})", file=name, fix="resize it") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({exc})", file=name, fix="replace or remove the corrupt image") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous_cap


def open_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    return decode_image(Path(path), name=str(path), max_pixels=max_pixels)
