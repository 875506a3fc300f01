"""Reading images, with one-line errors naming the file."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from reidplug.core.errors import DataError


def read_image(path: str) -> Image.Image:
    """The decoded RGB image at `path`; a missing, unreadable or corrupt file is a DataError."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not inside a transform
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read image ({reason})") from None
