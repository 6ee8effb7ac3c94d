"""Array encodings shared by the event files and the HTTP payloads (see docs/format.md)."""

import json
import struct
import zlib

import numpy as np

MAGIC = b"TBA1"
MAGIC_ZLIB = b"TBAZ"
_DTYPES = {"uint8", "uint16", "float16", "float32", "float64", "int32"}
_ALIGN = 8

# cbrt8: w = 2^(-row_exp/8) * (code/255)^3
_CBRT8_LUT = (np.arange(256, dtype=np.float64) / 255.0) ** 3
_EXP_STEPS_PER_OCTAVE = 8


def _pad(n):
    return -n % _ALIGN


def pack(arrays, meta=None):
    """Packs named numpy arrays into one self-describing TBA1 container."""
    header = {"meta": meta or {}, "arrays": {}}
    bodies, offset = [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        dtype = array.dtype.newbyteorder("<")
        if array.dtype.name not in _DTYPES:
            raise TypeError(f"cannot pack dtype {array.dtype} (array {name!r})")
        header["arrays"][name] = {"dtype": array.dtype.name, "shape": list(array.shape), "offset": offset}
        # A byte view, not a copy: the join below is the only copy of a (possibly 134 MB) layer.
        raw = memoryview(np.ascontiguousarray(array.astype(dtype, copy=False))).cast("B")  # type: ignore[arg-type]
        bodies += [raw, b"\0" * _pad(len(raw))]
        offset += len(raw) + _pad(len(raw))
    # A checksum of the bodies: the Rust data server serves records without checking their CRC.
    header["crc32"] = _crc(bodies)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * _pad(len(head))
    return b"".join([MAGIC, struct.pack("<I", len(head)), head, *bodies])


def _crc(chunks):
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return crc


def compress(container):
    return MAGIC_ZLIB + zlib.compress(container, 1)


# The largest container a reader inflates: far above one layer of the largest step the writer accepts by default
# (2 GiB of float32 weights are 0.5 GiB of codes), small enough that a crafted zlib stream cannot exhaust memory.
MAX_CONTAINER_BYTES = 1 << 30


def decompress(blob):
    """Returns the TBA1 container inside `blob`, which may be stored zlib-compressed."""
    if blob[:4] == MAGIC_ZLIB:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(blob[4:], MAX_CONTAINER_BYTES)
        except zlib.error as e:
            raise ValueError(f"damaged data: corrupt compressed container ({e})") from None
        if inflater.unconsumed_tail:
            raise ValueError(f"damaged data: compressed container inflates beyond {MAX_CONTAINER_BYTES} bytes")
        return out
    return blob


def unpack(blob):
    """Returns (meta, {name: ndarray}) from a TBA1 container (compressed or not); ValueError if malformed."""
    buf = decompress(blob)
    if len(buf) < 8 or buf[:4] != MAGIC:
        raise ValueError("not a TBA1 container")
    (head_len,) = struct.unpack("<I", buf[4:8])
    body = 8 + head_len
    if body > len(buf):
        raise ValueError("truncated TBA1 header")
    try:
        header = json.loads(buf[8:body])
        if "crc32" in header and _crc([memoryview(buf)[body:]]) != header["crc32"]:
            raise ValueError("damaged data: checksum mismatch")
        arrays = {}
        for name, spec in header["arrays"].items():
            if spec["dtype"] not in _DTYPES:
                raise ValueError(f"unknown dtype {spec['dtype']!r}")
            dtype = np.dtype(spec["dtype"]).newbyteorder("<")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            start = body + int(spec["offset"])
            if start < body or start + count * dtype.itemsize > len(buf):
                raise ValueError(f"array {name!r} runs past the end of the container")
            arrays[name] = np.frombuffer(buf, dtype, count, start).reshape(spec["shape"])
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError("malformed TBA1 header: meta is not an object")
        return meta, arrays
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, OverflowError, RecursionError) as e:
        raise ValueError(f"malformed TBA1 header: {e!r}") from None


def encode_cbrt8(weights):
    """float [..., K] weights in [0, 1] -> (codes uint8 [..., K], row_exp uint8 [...]).

    Cube-root companding keeps small weights; a per-row power-of-2^(1/8) scale keeps diffuse rows precise.
    """
    w = np.asarray(weights, dtype=np.float32)
    codes = np.empty(w.shape, np.uint8)
    row_exp = np.empty(w.shape[:-1], np.uint8)
    # In slices of ~4M weights: temporaries stay small even for a 32-head, 2,048-token layer.
    rows = w.reshape(-1, w.shape[-1])
    chunk = max(1, (1 << 22) // max(1, w.shape[-1]))
    for start in range(0, rows.shape[0], chunk):
        part = rows[start : start + chunk]
        c, e = _encode_rows(part)
        codes.reshape(rows.shape)[start : start + chunk] = c
        row_exp.reshape(-1)[start : start + chunk] = e
    return codes, row_exp


def _encode_rows(w):
    row_max = w.max(axis=-1)
    with np.errstate(divide="ignore"):
        exp = np.floor(-_EXP_STEPS_PER_OCTAVE * np.log2(row_max))
    exp = np.clip(np.nan_to_num(exp, posinf=255.0), 0, 255)
    # Float rounding can put the row maximum a hair above the scale; the clip below absorbs it.
    inv_scale = np.exp2(exp / _EXP_STEPS_PER_OCTAVE).astype(np.float32)
    x = w * inv_scale[..., None]
    np.cbrt(x, out=x)
    x *= 255.0
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8), exp.astype(np.uint8)


def decode_cbrt8(codes, row_exp):
    scale = np.exp2(-np.asarray(row_exp, np.float64) / _EXP_STEPS_PER_OCTAVE)
    return (_CBRT8_LUT[codes] * scale[..., None]).astype(np.float32)


def cbrt8_error_bound(weights):
    """The documented worst-case |decoded - w| for each weight (docs/format.md)."""
    w = np.asarray(weights, np.float64)
    m = w.max(axis=-1, keepdims=True)
    return 0.00606 * np.cbrt(m) * np.cbrt(w) ** 2 + 1.23e-5 * m


def attention_container(weights):
    codes, row_exp = encode_cbrt8(weights)
    return pack({"codes": codes, "row_exp": row_exp}, {"encoding": "cbrt8"})


def qk_container(queries, keys):
    return pack(
        {"queries": np.asarray(queries, np.float16), "keys": np.asarray(keys, np.float16)},
        {"encoding": "float16"},
    )


def recompute_container(lse, overview_codes, key_len, topk_keys=None, topk_codes=None, bias=None, meta=None):
    """The attention slot of a "qk" layer (format.md): per-row normalisers, overview, top-k and the bias table."""
    arrays = {"lse": np.asarray(lse, np.float32), "overview": np.asarray(overview_codes, np.uint8)}
    if topk_keys is not None and topk_keys.shape[-1]:
        key_dtype = np.uint16 if key_len <= 0xFFFF else np.int32
        arrays["topk_keys"] = np.asarray(topk_keys).astype(key_dtype)
        arrays["topk_codes"] = np.asarray(topk_codes, np.uint8)
    if bias is not None:
        arrays["bias"] = np.asarray(bias, np.float32)
    return pack(arrays, {"encoding": "recompute", **(meta or {})})


def decode_recompute(blob, num_heads, query_len, key_len):
    """(meta, arrays) of a "qk" layer's attention slot, every array's dtype and shape checked; ValueError."""
    meta, arrays = unpack(blob)
    if meta.get("encoding") != "recompute":
        raise ValueError(f"a q/k-only layer's attention slot has encoding {meta.get('encoding')!r}, not 'recompute'")
    sq, sk = min(query_len, 256), min(key_len, 256)
    expect = {"lse": ("float32", (num_heads, query_len)), "overview": ("uint8", (num_heads, sq, sk))}
    if "topk_keys" in arrays or "topk_codes" in arrays:
        k = arrays.get("topk_codes", arrays.get("topk_keys")).shape[-1]
        key_dtype = "uint16" if key_len <= 0xFFFF else "int32"
        expect["topk_keys"] = (key_dtype, (num_heads, query_len, k))
        expect["topk_codes"] = ("uint8", (num_heads, query_len, k))
    if "bias" in arrays:
        expect["bias"] = ("float32", (num_heads, query_len + key_len - 1))
    for name, (dtype, shape) in expect.items():
        a = arrays.get(name)
        if a is None or a.dtype.name != dtype or tuple(a.shape) != shape:
            got = "missing" if a is None else f"{a.dtype.name} {list(a.shape)}"
            raise ValueError(f"recompute container: {name} must be {dtype} {list(shape)}, got {got}")
    if "topk_keys" in arrays and arrays["topk_keys"].size and int(arrays["topk_keys"].max()) >= key_len:
        raise ValueError("recompute container: a top-k key index is past the last key")
    if not np.isfinite(arrays["lse"]).all() and np.isnan(arrays["lse"]).any():
        raise ValueError("recompute container: NaN row normaliser")
    return meta, arrays


def decode_attention(blob):
    meta, arrays = unpack(blob)
    if meta.get("encoding") != "cbrt8":
        raise ValueError(f"unknown attention encoding {meta.get('encoding')!r}")
    codes, row_exp = arrays.get("codes"), arrays.get("row_exp")
    if codes is None or row_exp is None or codes.dtype != np.uint8 or row_exp.dtype != np.uint8:
        raise ValueError("an attention container needs uint8 arrays 'codes' and 'row_exp'")
    if codes.ndim != 3 or row_exp.shape != codes.shape[:-1]:
        raise ValueError(f"attention codes {list(codes.shape)} and row_exp {list(row_exp.shape)} do not match")
    return decode_cbrt8(codes, row_exp)


def stats_crc(values):
    """CRC-32 of one step's per-head metrics ({name: float32 array}), in name order: what the writer stores under
    `metadata.stats_crc_tag` and the reader checks (docs/format.md)."""
    crc = 0
    for name in sorted(values):
        array = np.ascontiguousarray(values[name], "<f4")
        crc = zlib.crc32(name.encode("utf-8") + b"\0" + struct.pack(f"<{array.ndim}I", *array.shape), crc)
        crc = zlib.crc32(array.tobytes(), crc)
    return crc
