"""The step manifest (blob 0 of a probe step): encoded with a checksum by the writer, decoded and validated once by
the reader into a typed `Manifest` (docs/format.md, "Manifest").

Constraints:
- Every byte the views show is covered by a checksum: the Rust data server does not check event-record CRCs, so a
  flipped bit in a token would otherwise be served as the wrong token. Version 2 manifests are `TBM1`, a CRC-32 and
  the JSON; version 1 manifests (plain JSON, no checksum) stay readable.
- A manifest is untrusted input: anything that is not exactly what the writer produces raises `ManifestError` with
  a message (the server answers 422), never another exception, whatever the bytes.
"""

import dataclasses
import json
import struct
import zlib
from typing import Any, Optional

from tb_attention.format.image import MAX_SIDE as MAX_IMAGE_SIDE

MAGIC = b"TBM1"
_HEADER = struct.Struct("<4sI")  # magic, CRC-32 of the JSON bytes
_MAX_COUNT = 1 << 20  # layers, heads, tokens, dimensions: far beyond any model, small enough to stay an int32


class ManifestError(ValueError):
    """The manifest of a step is damaged or not one this reader understands."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    num_layers: int
    num_heads: int
    query_len: int
    key_len: int
    tokens: list
    key_tokens: Optional[list]  # None: self-attention (the keys are the query tokens)
    has_qk: bool
    num_kv_heads: Optional[int]  # None unless q/k were logged
    d_head: Optional[int]
    image: Optional[dict]  # {"index", "width", "height"} of the PNG blob
    raw: dict  # the validated JSON object, as the `tokens` route serves it
    # Per stored layer: its index in the model, its heads' indices and the recompute parameters (docs/format.md,
    # "Layers"); None when the writer did not say (layer l is then the model's layer l, head h its head h).
    layers: Optional[list] = None
    # Per stored layer: "weights", "both" or "qk" (format.md, "Storage per layer"); None = weights everywhere.
    storage: Optional[list] = None

    def weights_stored(self, layer):
        """Whether layer `layer`'s attention blob holds weights (else a `recompute` container)."""
        return self.storage is None or self.storage[layer] != "qk"

    def blob_count(self):
        """Blobs a step with this manifest holds: manifest, attention per layer, q/k per layer, optional image."""
        return 1 + self.num_layers * (2 if self.has_qk else 1) + (1 if self.image else 0)


def encode(fields):
    """Bytes of blob 0 for a manifest dict (the writer's side)."""
    body = json.dumps(fields, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    return _HEADER.pack(MAGIC, zlib.crc32(body)) + body


def decode(blob):
    """Bytes of blob 0 -> a validated `Manifest`; raises ManifestError."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ManifestError(f"manifest blob is {type(blob).__name__}, not bytes")
    blob = bytes(blob)
    if blob[:4] == MAGIC:
        if len(blob) < _HEADER.size:
            raise ManifestError("manifest is truncated (no checksum)")
        _, crc = _HEADER.unpack_from(blob)
        body = blob[_HEADER.size :]
        if zlib.crc32(body) != crc:
            raise ManifestError("manifest checksum mismatch: the stored bytes are damaged")
    else:
        body = blob  # version 1: plain JSON
    try:
        fields = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ManifestError(f"manifest is not JSON: {e}") from None
    return validate(fields)


def _no_constant(name):
    raise ValueError(f"{name} is not valid in a manifest")


def validate(fields):
    """A decoded manifest object -> `Manifest`; raises ManifestError naming the first field that is wrong."""
    if not isinstance(fields, dict):
        raise ManifestError(f"manifest must be a JSON object, got {type(fields).__name__}")
    num_layers = _count(fields, "num_layers")
    num_heads = _count(fields, "num_heads")
    query_len = _count(fields, "query_len")
    key_len = _count(fields, "key_len")
    tokens = _strings(fields, "tokens", query_len)
    key_tokens = None if fields.get("key_tokens") is None else _strings(fields, "key_tokens", key_len)
    if key_tokens is None and key_len != query_len:
        raise ManifestError(f"key_len {key_len} differs from query_len {query_len} but key_tokens is missing")
    has_qk = fields.get("has_qk")
    if not isinstance(has_qk, bool):
        raise ManifestError(f"has_qk must be true or false, got {_show(has_qk)}")
    num_kv_heads = d_head = None
    if has_qk:
        num_kv_heads, d_head = _count(fields, "num_kv_heads"), _count(fields, "d_head")
        if num_heads % num_kv_heads:
            raise ManifestError(f"num_kv_heads {num_kv_heads} does not divide num_heads {num_heads}")
    if fields.get("segments") is not None:
        segments = fields["segments"]
        if not (isinstance(segments, list) and len(segments) == query_len and all(_is_count(s, 0) for s in segments)):
            raise ManifestError(f"segments must be {query_len} non-negative integers")
    if fields.get("patch_grid") is not None:
        _patch_grid(fields["patch_grid"], query_len)
    image = fields.get("image")
    if image is not None:
        image = _image(image, 1 + num_layers * (2 if has_qk else 1))
        if fields.get("patch_grid") is None:
            raise ManifestError("image without patch_grid")
    layers = (
        None if fields.get("layers") is None else validate_layers(fields["layers"], num_layers, num_heads, num_kv_heads)
    )
    storage = None if fields.get("storage") is None else validate_storage(fields["storage"], num_layers, has_qk, layers)
    return Manifest(
        num_layers,
        num_heads,
        query_len,
        key_len,
        tokens,
        key_tokens,
        has_qk,
        num_kv_heads,
        d_head,
        image,
        fields,
        layers,
        storage,
    )


STORAGE_KINDS = ("weights", "both", "qk")


def validate_storage(storage, num_layers, has_qk, layers):
    """The optional per-layer storage list; a "qk" layer needs q/k and every recompute parameter known."""
    if not isinstance(storage, list) or len(storage) != num_layers or any(s not in STORAGE_KINDS for s in storage):
        raise ManifestError(
            f"storage must be a list of {num_layers} of {', '.join(STORAGE_KINDS)}, got {_show(storage)}"
        )
    for i, kind in enumerate(storage):
        if kind == "weights":
            continue
        if not has_qk:
            raise ManifestError(f"storage[{i}] is {kind!r} but the step has no q/k")
        if kind == "both":
            continue
        entry = layers[i] if layers is not None else {}
        missing = [k for k in ("scaling", "mask") if entry.get(k) is None]
        if missing or entry.get("mask") == "tensor" or (entry.get("bias") or "none") not in ("none", "relative"):
            why = (
                f"unknown {', '.join(missing)}"
                if missing
                else f"mask {entry.get('mask')!r}, bias {entry.get('bias')!r}"
            )
            raise ManifestError(f"storage[{i}] is 'qk' but layers[{i}] cannot rebuild its weights ({why})")
        if entry.get("mask") == "prefix" and entry.get("prefix") is None:
            raise ManifestError(f"storage[{i}] is 'qk' but layers[{i}]: a prefix mask needs its prefix")
    return storage


MASK_KINDS = ("none", "causal", "sliding", "chunked", "band", "prefix", "tensor")  # as tb_attention/capture/masks.py


def validate_layers(layers, num_layers, num_heads, num_kv_heads=None):
    """The optional per-layer list: one object per stored layer, in stored order; raises ManifestError.

    Only the keys below are read; a reader ignores others (a newer writer may add some). `null` (or absent) means
    unknown, never "off": a view must not assume 1/sqrt(d) scaling or no mask for a layer whose writer did not say.
    """
    if not isinstance(layers, list) or len(layers) != num_layers:
        got = f"{len(layers)} entries" if isinstance(layers, list) else _show(layers)
        raise ManifestError(f"layers must be a list of {num_layers} objects (one per stored layer), got {got}")
    indices = set()
    for i, entry in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} must be an object, got {_show(entry)}")
        if not _is_count(entry.get("index"), 0):
            raise ManifestError(
                f"{where}.index must be the layer's index in the model (0..), got {_show(entry.get('index'))}"
            )
        if entry["index"] in indices:
            raise ManifestError(f"{where}.index {entry['index']} repeats an earlier layer")
        indices.add(entry["index"])
        heads = entry.get("heads")
        if heads is not None and not (
            isinstance(heads, list)
            and len(heads) == num_heads
            and all(_is_count(h, 0) for h in heads)
            and len(set(heads)) == num_heads
        ):
            raise ManifestError(f"{where}.heads must be {num_heads} distinct head indices (0..), got {_show(heads)}")
        kv_heads = entry.get("kv_heads")
        if kv_heads is not None and not (
            num_kv_heads is not None
            and isinstance(kv_heads, list)
            and len(kv_heads) == num_kv_heads
            and all(_is_count(h, 0) for h in kv_heads)
        ):
            raise ManifestError(
                f"{where}.kv_heads must be {num_kv_heads} key head indices (0..), got {_show(kv_heads)}"
            )
        for name in ("scaling", "softcap"):
            value = entry.get(name)
            if value is not None and not (_is_number(value) and value > 0):
                raise ManifestError(f"{where}.{name} must be a positive number or null, got {_show(value)}")
        mask = entry.get("mask")
        if mask is not None and mask not in MASK_KINDS:
            raise ManifestError(f"{where}.mask must be one of {', '.join(MASK_KINDS)} or null, got {_show(mask)}")
        for name, minimum in (("window", 0), ("chunk", 1), ("prefix", 0)):
            value = entry.get(name)
            if value is not None and not _is_count(value, minimum):
                raise ManifestError(f"{where}.{name} must be an integer >= {minimum} or null, got {_show(value)}")
        offset = entry.get("offset")
        if offset is not None and not (type(offset) is int and abs(offset) <= _MAX_COUNT):
            raise ManifestError(f"{where}.offset must be an integer or null, got {_show(offset)}")
        if mask in ("sliding", "band") and entry.get("window") is None:
            raise ManifestError(f"{where}: a {mask} mask needs its window")
        if mask == "sliding" and entry["window"] < 1:
            raise ManifestError(f"{where}: a sliding window must be at least 1")
        if mask == "chunked" and entry.get("chunk") is None:
            raise ManifestError(f"{where}: a chunked mask needs its chunk")
        bias = entry.get("bias")
        if bias is not None and not (isinstance(bias, str) and 0 < len(bias) <= 64):
            raise ManifestError(
                f'{where}.bias must be a short string (e.g. "none", "additive") or null, got {_show(bias)}'
            )
        sinks = entry.get("sinks")
        if sinks is not None and not (
            isinstance(sinks, list) and len(sinks) == num_heads and all(_is_number(v) for v in sinks)
        ):
            raise ManifestError(f"{where}.sinks must be {num_heads} numbers (one logit per head) or null")
    return layers


def _is_number(value):
    # JSON numbers only (no bools); NaN/Infinity never reach here (the decoder refuses them).
    return type(value) in (int, float) and abs(value) < 1e300


def _is_count(value, minimum):
    return type(value) is int and minimum <= value <= _MAX_COUNT


def _count(fields, name, minimum=1):
    value = fields.get(name)
    if not _is_count(value, minimum):
        raise ManifestError(f"{name} must be an integer in {minimum}..{_MAX_COUNT}, got {_show(value)}")
    return value


def _strings(fields, name, length):
    value = fields.get(name)
    if not isinstance(value, list) or len(value) != length or not all(isinstance(t, str) for t in value):
        got = f"{len(value)} entries" if isinstance(value, list) else _show(value)
        raise ManifestError(f"{name} must be a list of {length} strings, got {got}")
    return value


def _patch_grid(grid, query_len):
    if not isinstance(grid, dict):
        raise ManifestError(f"patch_grid must be an object, got {_show(grid)}")
    rows, cols, special = grid.get("rows"), grid.get("cols"), grid.get("num_special")
    counts = _is_count(rows, 1) and _is_count(cols, 1) and _is_count(special, 0)
    if not counts or int(rows) * int(cols) + int(special) != query_len:  # type: ignore[arg-type]
        raise ManifestError(f"patch_grid rows x cols + num_special must equal the {query_len} tokens")
    patch = grid.get("patch_size")
    if patch is not None and not (isinstance(patch, list) and len(patch) == 2 and all(_is_count(p, 1) for p in patch)):
        raise ManifestError(f"patch_grid patch_size must be [height, width] or null, got {_show(patch)}")


def _image(image, index):
    if not isinstance(image, dict):
        raise ManifestError(f"image must be an object, got {_show(image)}")
    if image.get("index") != index or type(image.get("index")) is not int:
        raise ManifestError(f"image index must be {index} (the blob after the layers), got {_show(image.get('index'))}")
    for side in ("width", "height"):
        value = image.get(side)
        if not (type(value) is int and 1 <= value <= MAX_IMAGE_SIDE):
            raise ManifestError(f"image {side} must be an integer in 1..{MAX_IMAGE_SIDE}, got {_show(value)}")
    return image


def _show(value: Any):
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text[:40]
