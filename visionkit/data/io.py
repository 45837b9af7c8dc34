"""The one image decoder of visionkit.

Every reader, tool and check in the package decodes images through :func:`read_image`, so
every image reaches the pipeline the same way: ``H x W x 3`` ``uint8`` RGB, C-contiguous and
writable, with the EXIF orientation applied. Anything that cannot be read raises
:class:`~visionkit.errors.ImageDecodeError` naming the file and the reason.

Conversions (explicit, one rule per pixel mode):

* ``RGB`` is returned as stored; ``RGBX``, ``CMYK``, ``YCbCr``, ``HSV`` and ``P`` (palette)
  through Pillow's conversion to RGB. ICC profiles are not applied.
* ``1`` (bilevel) becomes 0 / 255, ``L`` (grey) is copied to the three channels.
* **Transparency is composited on black**: ``RGBA``, ``LA``, ``PA``, ``P`` with a
  transparent palette entry, and ``L`` / ``RGB`` with a ``tRNS`` colour key all become
  ``rgb * alpha / 255`` (rounded). A fully transparent pixel is always ``(0, 0, 0)``,
  whatever colour happens to be stored under it, so hidden data never leaks into training.
* 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) is rescaled proportionally,
  ``round(v * 255 / 65535)``: 65535 -> 255, 32768 -> 128, never clipped at 255.
* ``I`` (32-bit signed integer; Pillow opens some 16-bit PNG/TIFF files this way) is treated
  as 16-bit: values are clipped to ``[0, 65535]`` and then rescaled as above. The mapping
  is fixed rather than per-image, so the same value always gives the same grey.
* ``F`` (32-bit float) is read as intensity in ``[0, 1]``: ``round(v * 255)``, values
  outside the range clipped, NaN -> 0.
* 16-bit colour PNGs are reduced to 8 bits by Pillow itself when it opens them (high byte).
* **12-bit (or 10-, 14-bit) data in a 16-bit PNG** is recognised by the PNG ``sBIT`` chunk
  (significant bits, parsed here: Pillow does not expose it). A 16-bit PNG without ``sBIT``
  is 16-bit data, rescaled by 65535 as above. With ``sBIT`` = *b* < 16, the PNG
  specification has the writer scale the samples up to the full 16 bits (pypng does), and
  such files are read exactly like those without the chunk; but cameras and many tools store
  the *b*-bit values as they are, in the low bits (0-4095 for 12 bits), which the 65535 rule
  turns nearly black. So when no sample of the image exceeds ``2**b - 1`` the samples are
  read as low-bit data, ``round(v * 255 / (2**b - 1))`` (4095 -> 255, 2048 -> 128); when any
  does, the file follows the specification. (The one file this misreads is a scaled-up image
  whose brightest sample is under ``2**b``, i.e. darker than 1/16 of full scale for 12 bits,
  which then comes out 16 times brighter.) Alpha follows its own ``sBIT`` entry. Colour and
  grey+alpha PNGs in the low-bit layout (Pillow's high byte at most ``(2**b - 1) >> 8``) are
  decoded again with OpenCV to keep their low bits; without OpenCV installed they raise
  ``ImageDecodeError`` saying so rather than coming out black.
* Any other mode (``LAB``, ``La``, ``RGBa``, ...) raises ``ImageDecodeError``.

Robustness (see ``RELIABILITY.md``):

* Files are opened with Python's ``open`` (non-ASCII paths work) and only the formats in
  :data:`SUPPORTED_FORMATS` are tried, so Pillow plugins that run external programs (EPS
  through Ghostscript) are never reached.
* Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) stays on, and is
  stricter here: an image over the limit is rejected from its header, before any pixel is
  decoded (Pillow itself only warns between 1x and 2x the limit, and still emits that
  ``DecompressionBombWarning`` before the error here; warning filters are left alone because
  they are process-global). Setting the limit to ``None`` switches the check off, as in Pillow.
* ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched (it must stay ``False``): the
  pixels are decoded inside the error handling, so a truncated file raises here rather than
  yielding a half-grey image.
* For multi-frame files (GIF, TIFF, MPO) the first frame is read.
* An EXIF block that cannot be parsed is ignored (orientation 1) rather than rejected.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> path = pathlib.Path(tempfile.mkdtemp()) / "grey.png"
>>> Image.new("L", (4, 2), 7).save(path)
>>> image = read_image(path)
>>> image.shape, image.dtype, image[0, 0].tolist()
((2, 4, 3), dtype('uint8'), [7, 7, 7])
>>> read_image_size(path)
(2, 4)
"""

from __future__ import annotations

import functools
import io
import os
import struct
from typing import IO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from visionkit.errors import ImageDecodeError

__all__ = [
    "COLOUR_LABEL_MODES",
    "HEIF_ADVICE",
    "HEIF_EXTENSIONS",
    "LABEL_FORMATS",
    "LABEL_MODES",
    "SUPPORTED_FORMATS",
    "read_image",
    "read_image_header",
    "read_image_size",
    "read_label_image",
    "read_label_image_header",
]

#: Formats of label images (class indices per pixel): lossless ones only.
LABEL_FORMATS: tuple[str, ...] = ("PNG", "TIFF")
#: Pixel modes of label images whose values are class indices.
LABEL_MODES: tuple[str, ...] = ("P", "L", "I;16", "I")
#: Pixel modes of colour-coded label images (one colour per class, e.g. CamVid's ``_L`` PNGs):
#: RGB, RGBA (Cityscapes' ``_gtFine_color``; opaque only) or a palette image of those colours.
COLOUR_LABEL_MODES: tuple[str, ...] = ("RGB", "RGBA", "P")

#: Photos Pillow cannot decode (an iPhone saves HEIC unless set otherwise): never listed as
#: images, and named, with what to do, where they are left out.
HEIF_EXTENSIONS = (".heic", ".heif")
HEIF_ADVICE = (
    "Pillow cannot decode HEIC / HEIF photos (the iPhone camera's default format): convert "
    "them to JPEG (e.g. heif-convert from libheif, or macOS Preview / Photos' export), or set "
    "the iPhone to Settings > Camera > Formats > Most Compatible"
)

#: Pillow formats the decoder will open, tried in this order (those the installed Pillow
#: lacks are skipped). TGA goes last because it has no magic number.
SUPPORTED_FORMATS: tuple[str, ...] = (
    "JPEG",
    "MPO",
    "PNG",
    "BMP",
    "GIF",
    "TIFF",
    "WEBP",
    "AVIF",
    "JPEG2000",
    "PPM",
    "TGA",
)

_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_VIA_PILLOW_RGB = ("RGBX", "CMYK", "YCbCr", "HSV", "P")
_ALPHA_MODES = ("RGBA", "LA", "PA", "P", "L", "RGB")
_SUPPORTED_MODES = ("RGB", "1", "L", "LA", "PA", "RGBA", "I", "F", *_GREY_16, *_VIA_PILLOW_RGB)

# EXIF orientation -> how to turn the stored pixels upright (same table as
# PIL.ImageOps.exif_transpose, done on numpy views so no extra copy is made).
_ORIENTED = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.swapaxes(0, 1),  # TRANSPOSE
    6: lambda a: a[::-1].swapaxes(0, 1),  # ROTATE_270 (90 degrees clockwise)
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # TRANSVERSE
    8: lambda a: a[:, ::-1].swapaxes(0, 1),  # ROTATE_90 (90 degrees counter-clockwise)
}


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to RGB, upright, with every pixel mode converted explicitly.

    Args:
        path: the image file. Read through Python's file API, so any path the OS accepts
            works, non-ASCII included.

    Returns:
        A new, writable, C-contiguous ``uint8`` array ``[H, W, 3]`` in RGB order, with the
        EXIF orientation applied (so ``H, W`` are those of the upright image, as given by
        :func:`read_image_size`). See the module docstring for the conversion of each mode;
        in short: alpha is composited on black, 16-bit is rescaled (65535 -> 255; 4095 -> 255
        for 12-bit data in the low bits of a PNG whose ``sBIT`` chunk says 12 bits).

    Raises:
        ImageDecodeError: the file is missing, not an image of a supported format, corrupt or
            truncated, over ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, or of an unsupported mode;
            a 16-bit colour PNG of low-bit data (``sBIT``) when OpenCV is not installed.
    """
    name = os.fspath(path)
    with _open_file(name) as fp:
        im = _open_image(fp, name)
        orientation = _orientation(im)
        try:
            im.load()
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ...
            raise ImageDecodeError(name, f"corrupt or truncated image data ({_describe(e)})") from e
        bits = _png_significant_bits(fp) if im.format == "PNG" else ()
        array = _to_rgb(im, name, bits)
        if bits and im.mode in ("RGB", "RGBA"):
            array = _low_bit_colour_png(fp, name, array, bits)
    array = _ORIENTED[orientation](array) if orientation in _ORIENTED else array
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = array.copy(order="C")
    return array


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image in memory as ``[H, W, 3]`` uint8 RGB, each mode converted as
    :func:`read_image` converts a file's (transparency composited on black, 16-bit
    rescaled); its pixels are taken as they are, without an EXIF rotation.

    Other modes (``RGBa``, ``La``, ``LAB``, ...) are converted by Pillow to RGBA first (to
    RGB where it cannot).

    Raises:
        ImageDecodeError: a mode Pillow converts to neither.
    """
    name = f"<PIL image, mode {im.mode}>"
    for mode in ("RGBA", "RGB"):
        if im.mode in _SUPPORTED_MODES:
            break
        try:
            im = im.convert(mode)
        except ValueError as err:
            if mode == "RGB":
                raise ImageDecodeError(name, f"cannot convert its mode to RGB ({err})") from err
    return np.array(_to_rgb(im, name))


def read_image_header(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(height, width, orientation)`` from the header: the size of the upright image (as
    :func:`read_image_size`) and the EXIF orientation (1-8; 1 when there is none) that
    :func:`read_image` applies.

    Raises:
        ImageDecodeError: as :func:`read_image_size`.
    """
    name = os.fspath(path)
    with _open_file(name) as fp:
        im = _open_image(fp, name)
        width, height = im.size
        orientation = _orientation(im)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return height, width, orientation


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Size ``(H, W)`` of the upright image, read from the header without decoding pixels.

    EXIF orientations 5-8 swap the stored width and height, exactly as :func:`read_image`
    does. The same format and decompression-bomb checks apply; truncated pixel data is *not*
    detected here (only :func:`read_image` decodes the pixels).

    Args:
        path: the image file.

    Returns:
        ``(height, width)`` in pixels.

    Raises:
        ImageDecodeError: the file is missing, not an image of a supported format, or over
            ``PIL.Image.MAX_IMAGE_PIXELS`` pixels.
    """
    return read_image_header(path)[:2]


def read_label_image_header(
    path: str | os.PathLike[str], colour: bool = False
) -> tuple[str, tuple[int, int]]:
    """``(mode, (height, width))`` of a label image, from its header (no pixel decoded);
    ``colour`` as in :func:`read_label_image`.

    Raises:
        ImageDecodeError: as :func:`read_label_image` (except for truncated pixel data).
    """
    name = os.fspath(path)
    with _open_file(name) as fp:
        im = _open_label(fp, name, colour)
        return im.mode, (im.size[1], im.size[0])


def read_label_image(
    path: str | os.PathLike[str], colour: bool = False, data: bytes | None = None
) -> np.ndarray:
    """Decode a label image: the class index of every pixel, as stored (of the bytes ``data``
    when given, which ``path`` then names: a mask embedded in an annotation file, which may
    also be black-and-white, mode ``1``, read as 0 / 1: LabelMe saves its masks so).

    The same decoder as :func:`read_image` (Python's ``open``, the decompression-bomb limit
    from the header, truncated data an error), with an allow-list of its own: only
    :data:`LABEL_FORMATS` are tried (a file of another kind named ``.png`` is refused before
    any plugin can run), only :data:`LABEL_MODES` are accepted (an RGB colour image is not
    a label image), and an EXIF orientation other than 1 is refused: the pixels would not line
    up with those of the image.

    With ``colour``, the file is a colour-coded label image instead (:data:`COLOUR_LABEL_MODES`:
    one colour per class, which the caller maps to classes through a palette): its colours
    are returned, a palette image's indices looked up in its palette.

    Returns:
        ``[H, W]`` integer array (``uint8`` for ``P`` / ``L``); with ``colour``, ``uint8
        [H, W, 3]`` RGB colours (``[H, W, 4]`` for an RGBA file, alpha kept for the caller).

    Raises:
        ImageDecodeError: naming the file and the reason.
    """
    name = os.fspath(path)
    with _open_file(name) if data is None else io.BytesIO(data) as fp:
        im = _open_label(fp, name, colour, ("1",) * (data is not None))
        try:
            im.load()
        except Exception as e:
            raise ImageDecodeError(name, f"corrupt or truncated image data ({_describe(e)})") from e
        if colour and im.mode == "P":
            im = im.convert("RGB")
        return np.array(im, np.uint8) if im.mode == "1" else np.array(im)


def _open_label(fp: IO[bytes], name: str, colour: bool = False, more=()) -> Image.Image:
    im = _open_image(fp, name, LABEL_FORMATS)
    if colour and im.mode not in COLOUR_LABEL_MODES:
        raise ImageDecodeError(
            name,
            f"a colour-coded label image in mode {im.mode}; expected an RGB(A) or palette image "
            "whose colours are those of the palette file",
        )
    if not colour and im.mode not in LABEL_MODES + more:  # more: "1" for embedded masks
        raise ImageDecodeError(
            name,
            f"a label image in mode {im.mode}; expected a palette (P) or single-channel (L, I) "
            "image whose values are class indices (RGB labels whose colours stand for classes "
            "need a palette file: mask_folder's palette)",
        )
    orientation = _orientation(im)
    if orientation != 1:
        raise ImageDecodeError(
            name,
            f"a label image with EXIF orientation {orientation}: its pixels would not line "
            "up with the upright image; save it without the orientation tag",
        )
    return im


def _open_file(name: str) -> IO[bytes]:
    try:
        return open(name, "rb")  # noqa: SIM115 - closed by the caller's `with`
    except FileNotFoundError as e:
        raise ImageDecodeError(name, "file not found") from e
    except IsADirectoryError as e:
        raise ImageDecodeError(name, "is a directory, not a file") from e
    except PermissionError as e:
        raise ImageDecodeError(name, "permission denied") from e
    except OSError as e:
        raise ImageDecodeError(name, f"cannot open file ({_describe(e)})") from e


@functools.cache
def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in SUPPORTED_FORMATS if f in Image.OPEN)


def _open_image(fp: IO[bytes], name: str, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Identify the image (among ``formats``, default :data:`SUPPORTED_FORMATS`) and read its
    header; reject decompression bombs before decoding."""
    formats = tuple(f for f in formats if f in _formats()) if formats else _formats()
    try:
        empty = os.fstat(fp.fileno()).st_size == 0
    except (OSError, AttributeError, ValueError):
        empty = False
    if empty:
        raise ImageDecodeError(name, "empty file (0 bytes)")
    try:
        im = Image.open(fp, formats=formats)
    except UnidentifiedImageError as e:
        reason = f"not an image in a supported format ({', '.join(formats)})"
        fp.seek(0)
        head = fp.read(12)  # ISO base media: size, "ftyp", major brand
        if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heif", b"mif1"):
            reason = HEIF_ADVICE
        raise ImageDecodeError(name, reason) from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # The warning arrives here as an exception only when warnings are set to error.
        raise ImageDecodeError(name, f"rejected as a possible decompression bomb: {e}") from e
    except Exception as e:
        raise ImageDecodeError(name, f"unreadable image header ({_describe(e)})") from e
    limit = Image.MAX_IMAGE_PIXELS
    width, height = im.size
    if limit is not None and width * height > limit:
        raise ImageDecodeError(
            name,
            f"rejected as a possible decompression bomb: {width}x{height} = {width * height} "
            f"pixels exceeds the limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS)",
        )
    return im


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) from the header, without decoding pixels.

    ``Image.Image.getexif`` is called on the base class on purpose: ``PngImageFile.getexif``
    decodes the whole image to look for an ``eXIf`` chunk after the pixel data. Browsers ignore
    such late chunks too, and both public functions use this one helper, so they always agree.
    """
    try:
        value = Image.Image.getexif(im).get(ExifTags.Base.Orientation, 1)
    except Exception:  # a malformed EXIF block: keep the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(im: Image.Image, name: str, bits: tuple[int, ...] = ()) -> np.ndarray:
    """Convert a loaded image to ``[H, W, 3]`` uint8 RGB (possibly a read-only array);
    ``bits``: the significant bits of a 16-bit PNG's channels (its ``sBIT`` chunk)."""
    mode = im.mode
    if mode in _GREY_16 or mode == "I":
        values = np.asarray(im)
        if mode == "I":
            values = np.clip(values, 0, 65535)
        return _grey_to_rgb(_to_8_bits(values, bits[0] if bits else 16))
    if mode == "F":
        values = np.nan_to_num(np.asarray(im), nan=0.0, posinf=1.0, neginf=0.0)
        grey = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        return _grey_to_rgb(grey)
    if mode in _ALPHA_MODES and im.has_transparency_data:
        rgba = np.asarray(im if mode == "RGBA" else im.convert("RGBA"))
        return composite_on_black(rgba)
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("1", "L"):
        return _grey_to_rgb(np.asarray(im.convert("L") if mode == "1" else im))
    if mode in _VIA_PILLOW_RGB:
        return np.asarray(im.convert("RGB"))
    raise ImageDecodeError(
        name, f"unsupported pixel mode {mode!r} (supported: {', '.join(_SUPPORTED_MODES)})"
    )


def _to_8_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """16-bit samples -> uint8, ``round(v * 255 / top)``: ``top = 2**bits - 1`` when ``bits``
    (from ``sBIT``) is under 16 and no sample exceeds it (data in the low bits), else 65535."""
    top = (1 << bits) - 1 if 0 < bits < 16 else 65535
    if top != 65535 and int(values.max(initial=0)) > top:
        top = 65535  # scaled up to 16 bits, as the PNG specification asks
    wide = values.astype(np.uint64)  # round half up: floor((2 * v * 255 + top) / (2 * top))
    return ((wide * 510 + top) // (2 * top)).astype(np.uint8)


def _png_significant_bits(fp: IO[bytes]) -> tuple[int, ...]:
    """The ``sBIT`` entries (significant bits per channel) of a 16-bit PNG; ``()`` when it has
    no valid ``sBIT`` chunk (a value outside 1..16 is ignored, as the PNG specification says)
    or is not 16-bit. ``sBIT`` comes before the image data, so only the chunks up to the first
    ``PLTE`` / ``IDAT`` are read, the others skipped unread; Pillow has checked their CRCs
    when it opened the file."""
    fp.seek(8)  # the PNG signature
    depth = 0
    while len(head := fp.read(8)) == 8:
        length, kind = struct.unpack(">I4s", head)
        if kind in (b"PLTE", b"IDAT", b"IEND"):
            break
        if kind not in (b"IHDR", b"sBIT"):
            fp.seek(length + 4, os.SEEK_CUR)  # data and CRC
            continue
        data = fp.read(length)
        fp.seek(4, os.SEEK_CUR)  # CRC
        if kind == b"IHDR":
            depth = data[8] if len(data) == 13 else 0
            if depth != 16:
                return ()
        elif kind == b"sBIT" and depth == 16:
            return tuple(data) if data and all(1 <= b <= 16 for b in data) else ()
    return ()


def _low_bit_colour_png(
    fp: IO[bytes], name: str, rgb: np.ndarray, bits: tuple[int, ...]
) -> np.ndarray:
    """``rgb`` (Pillow's high bytes) of a 16-bit colour or grey+alpha PNG, or, when its
    ``sBIT`` says *b* < 16 bits and every high byte is at most ``(2**b - 1) >> 8`` (every
    sample may be at most ``2**b - 1``: the low-bit layout), all 16 bits decoded with OpenCV
    and rescaled as :func:`_to_8_bits` does."""
    has_alpha = len(bits) in (2, 4)  # grey+alpha, RGBA
    colour = max(bits[:-1] if has_alpha else bits, default=16)
    if colour >= 16 or int(rgb.max(initial=0)) > ((1 << colour) - 1) >> 8:
        return rgb  # the specification's layout (or no sBIT): Pillow's high byte is right
    try:
        import cv2
    except ImportError:
        raise ImageDecodeError(
            name,
            f"a 16-bit colour PNG whose sBIT chunk says {colour} significant bits and whose "
            f"samples all fit in them (at most {(1 << colour) - 1}): Pillow keeps only the "
            "high byte, which would make it nearly black; reading all 16 bits needs OpenCV: "
            "pip install opencv-python-headless",
        ) from None
    fp.seek(0)
    raw = cv2.imdecode(np.frombuffer(fp.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 3:
        raise ImageDecodeError(name, "OpenCV could not decode the 16-bit colour PNG")
    out = _to_8_bits(raw[:, :, 2::-1], colour)  # BGR(A) -> RGB
    if raw.shape[2] == 4:  # OpenCV gives grey+alpha as BGRA too
        alpha = _to_8_bits(raw[:, :, 3:], bits[-1] if has_alpha else 16)
        out = composite_on_black(np.concatenate([out, alpha], axis=2))
    return out


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 -> new ``[H, W, 3]`` uint8 with the grey value in every channel."""
    return np.repeat(grey[:, :, None], 3, axis=2)


def composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` uint8 straight alpha -> ``[H, W, 3]`` uint8 ``rgb * a / 255``, rounded."""
    rgb = rgba[:, :, :3].astype(np.uint16)
    rgb *= rgba[:, :, 3:]
    rgb += 127  # at most 255 * 255 + 127 = 65152: fits uint16
    rgb //= 255
    return rgb.astype(np.uint8)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
