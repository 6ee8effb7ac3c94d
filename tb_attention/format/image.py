"""The probe image of a ViT step: validated on the caller's thread, stored as PNG (docs/format.md, "Image")."""

import io
import numbers
import struct
import zlib

import numpy as np

MAX_SIDE = 8192  # a probe image is drawn at a few hundred pixels; larger is almost certainly a mistake


def validate(value):
    """-> a uint8 [H, W] (grey) or [H, W, 3] (RGB) copy of `value` (uint8, or float in [0, 1])."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        if str(value.layout) != "torch.strided" or value.device.type == "meta":
            raise TypeError(f"image must be a dense tensor with values (got layout {value.layout}, {value.device})")
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"image must be a numpy array or torch tensor, got {type(value).__name__}")
    shape = value.shape
    if value.ndim == 3 and shape[2] == 1:
        value = value[:, :, 0]
    if value.ndim == 3 and shape[2] != 3:
        hint = " (channels must come last: e.g. image.permute(1, 2, 0))" if shape[0] in (1, 3) else ""
        raise ValueError(f"image has shape {shape}: expected [H, W, 3] (RGB) or [H, W] (grey){hint}")
    if value.ndim not in (2, 3):
        raise ValueError(f"image must be [H, W, 3] or [H, W], got shape {shape}")
    if not (0 < shape[0] <= MAX_SIDE and 0 < shape[1] <= MAX_SIDE):
        raise ValueError(f"image is {shape[1]}x{shape[0]} pixels; each side must be 1..{MAX_SIDE}")
    if value.dtype == np.uint8:
        return np.array(value, np.uint8)
    if value.dtype.kind != "f":
        raise TypeError(f"image must be uint8 (0..255) or float in [0, 1], got dtype {value.dtype}")
    x = np.asarray(value, np.float32)
    if not np.isfinite(x).all():
        raise ValueError("image contains NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"a float image must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]: un-normalise pixel_values first "
            "(or pass uint8)"
        )
    return np.rint(x * 255).astype(np.uint8)


def grid(patch_grid, query_len, key_len):
    """(rows, cols) or {"rows", "cols", optional "patch_size" (int or (h, w)), "num_special"} -> the manifest's
    `patch_grid` dict; leading tokens beyond rows*cols are the special tokens (CLS, registers)."""
    if patch_grid is None:
        return None
    if isinstance(patch_grid, dict):
        unknown = set(patch_grid) - {"rows", "cols", "patch_size", "num_special"}
        if unknown or not {"rows", "cols"} <= set(patch_grid):
            raise ValueError(
                f"patch_grid needs keys rows, cols (optional patch_size, num_special); got {sorted(patch_grid)}"
            )
        rows, cols, patch = patch_grid["rows"], patch_grid["cols"], patch_grid.get("patch_size")
    else:
        try:
            rows, cols = patch_grid
        except (TypeError, ValueError):
            raise TypeError(f"patch_grid must be (rows, cols) or a dict, got {patch_grid!r}") from None
        patch = None
    rows, cols = _positive(rows, "patch_grid rows"), _positive(cols, "patch_grid cols")
    if query_len != key_len:
        raise ValueError("patch_grid is for self-attention over an image's tokens")
    special = query_len - rows * cols
    if special < 0:
        raise ValueError(f"patch_grid {rows}x{cols} has more patches than the {query_len} tokens")
    if (
        isinstance(patch_grid, dict)
        and patch_grid.get("num_special") is not None
        and patch_grid["num_special"] != special
    ):
        raise ValueError(
            f"num_special {patch_grid['num_special']} but {query_len} tokens - {rows}x{cols} patches = {special}"
        )
    if patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, numbers.Integral) else tuple(patch)
        patch = [_positive(ph, "patch height"), _positive(pw, "patch width")]
    return {"rows": rows, "cols": cols, "num_special": special, "patch_size": patch}


def check_fits(img, grid_info):
    """The grid must lie on the image: each patch at least one pixel (or patch_size pixels when given)."""
    ph, pw = grid_info["patch_size"] or (1, 1)
    need_h, need_w = grid_info["rows"] * ph, grid_info["cols"] * pw
    if img.shape[0] < need_h or img.shape[1] < need_w:
        raise ValueError(
            f"image is {img.shape[1]}x{img.shape[0]} pixels but the {grid_info['rows']}x{grid_info['cols']} patch "
            f"grid needs at least {need_w}x{need_h}"
        )


def _positive(v, what):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{what} must be a positive integer, got {v!r}")
    return int(v)


def encode_png(img):
    from PIL import Image  # a TensorBoard dependency

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", compress_level=6)  # uint8: L or RGB
    return buf.getvalue()


def check_png(data, width, height):
    """Fully decodes the PNG (chunk CRCs, zlib stream, size): ValueError if it is damaged or not the manifest's."""
    from PIL import Image

    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("the stored image is not a PNG")
    # Pillow does not check the CRC of the pixel data chunks: walk the chunks and check every one.
    pos = 8
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError("damaged image: truncated PNG chunk")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(data) or zlib.crc32(data[pos + 4 : end]) != struct.unpack(">I", data[end : end + 4])[0]:
            raise ValueError("damaged image: PNG chunk checksum mismatch")
        pos = end + 4
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (width, height):
                raise ValueError(f"the stored image is {im.size[0]}x{im.size[1]}, the manifest says {width}x{height}")
            im.load()
    except ValueError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, zlib/struct errors for damaged files
        raise ValueError(f"damaged image: {e}") from None
