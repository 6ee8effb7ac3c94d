"""Checks and copies what the training loop hands to the writer; every error is raised before anything is written."""

import numbers
import sys

import numpy as np

_MAX_WEIGHT = 1.0 + 1e-3  # softmax in fp16/bf16 can round a hair above 1


def _is_torch(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _shape(x, what):
    if _is_torch(x):
        check_tensor_storage(x, what)
        return tuple(x.shape)
    if isinstance(x, np.ndarray):
        return tuple(x.shape)
    raise TypeError(f"{what} must be a numpy array or torch tensor, got {type(x).__name__}")


def _check_numeric(x, what):
    dtype = str(x.dtype)
    if _is_torch(x):
        ok = x.dtype.is_floating_point or not (x.dtype.is_complex or dtype == "torch.bool")
    else:
        ok = x.dtype.kind in "fiu"
    if not ok:
        raise TypeError(f"{what} must hold real numbers, got dtype {dtype}")


def _layer_list(value, what, inner_rank):
    """Splits `value` into per-layer arrays of rank `inner_rank`, dropping a batch dimension of 1."""
    if value is None:
        raise TypeError(f"{what} must not be None")
    if isinstance(value, (list, tuple)):
        layers = list(value)
    else:
        shape = _shape(value, what)
        if len(shape) == inner_rank + 2 and shape[1] == 1:  # torch.stack(outputs.attentions): [layers, 1, ...]
            value, shape = value[:, 0], shape[:1] + shape[2:]
        elif len(shape) == inner_rank + 2:
            raise ValueError(
                f"{what}: [layers, batch, ...] with batch size {shape[1]}; log one example per tag, e.g. {what}[:, row]"
            )
        if len(shape) != inner_rank + 1:
            raise ValueError(
                f"{what}: a single array must be {inner_rank + 1}-D [layers, ...] (or {inner_rank + 2}-D "
                f"[layers, 1, ...]), got shape {shape}; for one layer pass a list with one array"
            )
        layers = [value[i] for i in range(shape[0])]
    if not layers:
        hint = ""
        if what == "attentions":  # what transformers 5 returns for output_attentions=True under sdpa attention
            hint = (
                "; transformers' sdpa attention returns no weights for output_attentions=True: load the model with "
                "attn_implementation='eager', or record it with `with tb_attention.capture(model) as cap:`"
            )
        raise ValueError(f"{what} is empty: no layers{hint}")
    shapes = []
    for i, layer in enumerate(layers):
        shape = _shape(layer, f"{what}[{i}]")
        _check_numeric(layer, f"{what}[{i}]")
        if len(shape) == inner_rank + 1 and shape[0] == 1:
            layer, shape = layer[0], shape[1:]  # HF outputs carry a batch dimension
            layers[i] = layer
        elif len(shape) == inner_rank + 1:
            raise ValueError(
                f"{what}[{i}] has batch size {shape[0]}; log one example per tag, e.g. [a[row] for a in {what}]"
            )
        if len(shape) != inner_rank:
            raise ValueError(f"{what}[{i}] must be {inner_rank}-D, got shape {shape}")
        if 0 in shape:
            raise ValueError(f"{what}[{i}] is empty (shape {shape})")
        shapes.append(shape)
    return layers, shapes


def _torch():
    # torch copies and reduces on all cores; use it when the caller has it loaded anyway.
    return sys.modules.get("torch")


def _copy_into(layers, shape, dtype, alloc):
    """One contiguous copy, so later in-place edits by the training loop cannot change what gets written."""
    out = alloc((len(layers),) + shape, dtype)
    torch = _torch()
    for i, layer in enumerate(layers):
        if torch is not None and (_is_torch(layer) or layer.flags.writeable):
            src = layer.detach() if _is_torch(layer) else torch.from_numpy(np.asarray(layer))
            torch.from_numpy(out[i]).copy_(src)
        else:  # numpy alone, or a read-only array (torch.from_numpy warns that it cannot protect it from writes)
            np.copyto(out[i], layer, casting="unsafe")
    return out


def _extrema(array):
    torch = _torch()
    if torch is not None:
        lo, hi = torch.aminmax(torch.from_numpy(array))
        return float(lo), float(hi)
    return float(array.min()), float(array.max())


def attention(value, alloc=np.empty, max_bytes=None):
    """-> float32 [L, H, Q, K]; refuses (before copying) a step whose float32 copy would exceed max_bytes."""
    layers, shapes = _layer_list(value, "attentions", 3)
    heads = {s[0] for s in shapes}
    if len(heads) > 1:
        raise ValueError(f"attentions: layers have different head counts {sorted(heads)}; all layers must match")
    if len(set(shapes)) > 1:
        raise ValueError(f"attentions: layers have different shapes {sorted(set(shapes))}")
    size = len(layers) * int(np.prod(shapes[0])) * 4
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"this step holds {size // 4:,} attention weights ({size / 2**30:.1f} GiB as float32), over "
            f"max_step_bytes={max_bytes:,}: log a subset of layers or heads (e.g. [a[:8] for a in attentions[::4]]), "
            "or raise max_step_bytes (see docs/scale.md)"
        )
    out = _copy_into(layers, shapes[0], np.float32, alloc)
    lo, hi = _extrema(out)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("attentions contain NaN or Inf")
    if lo < 0:
        raise ValueError(f"attentions contain negative weights (min {lo:.3g}); pass softmax probabilities")
    if hi > _MAX_WEIGHT:
        raise ValueError(f"attentions contain weights above 1 (max {hi:.3g}); pass softmax probabilities, not logits")
    return out


def vectors(value, what, length, d_head=None, alloc=np.empty):
    """-> float16 [L, heads, length, d_head] for queries or keys."""
    layers, shapes = _layer_list(value, what, 3)
    if len(set(shapes)) > 1:
        raise ValueError(f"{what}: layers have different shapes {sorted(set(shapes))}")
    heads, n, d = shapes[0]
    if n != length:
        raise ValueError(f"{what} cover {n} positions but the attention has {length}")
    if d_head is not None and d != d_head:
        raise ValueError(f"{what} have head dimension {d}, queries have {d_head}")
    # Stored as float16: values beyond its range become Inf in the copy and are reported with NaN/Inf.
    out = _copy_into(layers, shapes[0], np.float16, alloc)
    if _any_nonfinite_half(out):
        raise ValueError(f"{what} contain NaN or Inf, or values beyond the float16 range (|x| > 65504)")
    return out


_HALF_CHUNK = 1 << 16


def _any_nonfinite_half(array):
    """Whether a float16 array holds NaN or Inf (all exponent bits set): an integer test in cache-sized chunks,
    since numpy's float16 reductions are slow and a whole-array mask costs two passes through memory (0.8 s for
    the 1.3 GB of q/k of a 32-layer step at 4,096 tokens; 0.2 s chunked)."""
    bits = array.reshape(-1).view(np.uint16)
    buf = np.empty(_HALF_CHUNK, np.uint16)
    hit = np.empty(_HALF_CHUNK, bool)
    for start in range(0, bits.size, _HALF_CHUNK):
        chunk = bits[start : start + _HALF_CHUNK]
        n = chunk.size
        np.bitwise_and(chunk, 0x7C00, out=buf[:n])
        np.equal(buf[:n], 0x7C00, out=hit[:n])
        if hit[:n].any():
            return True
    return False


def token_list(value, what, length):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{what} must be a list of strings, got {type(value).__name__}")
    tokens = list(value)
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{what} must be strings; got {type(bad[0]).__name__} {bad[0]!r}")
    if len(tokens) != length:
        raise ValueError(f"{what} has {len(tokens)} entries but the attention covers {length} positions")
    return [str(t) for t in tokens]


def segment_ids(value, length):
    """Optional per-query-token segment ids (sentence A = 0, B = 1, ...): -> list of ints, or None."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"segments must be a list of integers, got {type(value).__name__}")
    ids = list(np.asarray(value).reshape(-1).tolist()) if isinstance(value, np.ndarray) else list(value)
    bad = [v for v in ids if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0]
    if bad:
        raise ValueError(f"segments must be non-negative integers; got {bad[0]!r}")
    if len(ids) != length:
        raise ValueError(f"segments has {len(ids)} entries but the attention covers {length} query positions")
    return [int(v) for v in ids]


def check_tensor_storage(x, what):
    """A torch tensor whose values can be copied to the CPU: dense (strided) and not on the meta device."""
    if x.layout is not _torch().strided:
        raise TypeError(f"{what} is a {x.layout} tensor; pass a dense tensor (e.g. {what}.to_dense())")
    if x.device.type == "meta":
        raise TypeError(f"{what} is on the meta device and holds no values; run the model on a real device")


# Steps are int64 in event files, and the browser reads them as JavaScript numbers, exact only up to 2**53 - 1:
# a larger step would be shown and requested as a different one, so the writer refuses it.
MAX_STEP = 2**53 - 1


def step_value(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an integer, got {type(step).__name__}")
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    if step > MAX_STEP:
        raise ValueError(f"step {step} is above 2**53 - 1, the largest step the browser can show exactly")
    return step


def wall_time(value):
    """None (now) or a finite number of seconds: the Rust data server stops reading a file at a NaN wall time."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"walltime must be a number of seconds, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"walltime must be a finite, non-negative number of seconds, got {value}")
    return value


def tag_name(tag):
    if not isinstance(tag, str):  # e.g. add_attention(attentions, ...): the tag was left out
        raise TypeError(
            f"the tag comes first and must be a string, got {type(tag).__name__}: "
            "e.g. add_attention('probe', attentions, tokens=..., step=...)"
        )
    if not tag.strip():
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    try:
        tag.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"tag {tag!r} cannot be encoded as UTF-8 (a lone surrogate?): event files store UTF-8"
        ) from None
    return tag


def metric_coords(patch_grid, query_len, key_len):
    if patch_grid is None:
        return {}
    from tb_attention.analysis import metrics

    if query_len != key_len:
        raise ValueError("patch_grid is for self-attention over an image's tokens")
    if isinstance(patch_grid, dict):  # the manifest's form: {"rows", "cols", ...}
        patch_grid = (patch_grid["rows"], patch_grid["cols"])
    rows, cols = (int(x) for x in patch_grid)
    coords = metrics.patch_coords(query_len, (rows, cols))
    return {"query_coords": coords, "key_coords": coords}


def metric_attention(value, alloc):
    """Validated copy: [L, H, Q, K], or [L, B, H, Q, K] for a per-layer batch of more than one example."""
    if hasattr(value, "shape") and len(value.shape) == 5 and value.shape[1] > 1:
        value = [value[i] for i in range(value.shape[0])]  # torch.stack(outputs.attentions) of a batch
    if (
        isinstance(value, (list, tuple))
        and value
        and all(hasattr(a, "shape") and len(a.shape) == 4 and a.shape[0] > 1 for a in value)
    ):
        rows = [attention([layer[b] for layer in value]) for b in range(value[0].shape[0])]
        if len({r.shape for r in rows}) > 1:
            raise ValueError("attentions: batch rows have different shapes")
        return np.stack(rows, axis=1)
    return attention(value, alloc)


def row_array(value, what, batch, length, dtype):
    """A copy of a per-token array ([length], or [batch, length] for a batch); None stays None."""
    if value is None:
        return None
    if _is_torch(value):
        check_tensor_storage(value, what)
        value = value.detach().cpu().numpy()
    array = np.array(value, dtype=dtype)
    if dtype is None and array.dtype.kind not in "iuUSO":
        raise TypeError(f"{what} must be token ids or strings, got dtype {array.dtype}")
    expected = (length,) if batch is None else (batch, length)
    if batch is not None and array.shape == (length,):
        array = np.broadcast_to(array, expected).copy()
    if batch is None and array.shape == (1, length):
        array = array[0]
    if array.shape != expected:
        raise ValueError(f"{what} has shape {array.shape}; expected {expected}")
    return array
