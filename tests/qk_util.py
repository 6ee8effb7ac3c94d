"""Reading q/k-only steps back from event files and rebuilding their weights the way a reader does (analysis/recompute
from the stored fp16 q/k, the manifest's recompute parameters and the layer's `recompute` container)."""

import glob

import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from tb_attention.analysis import recompute
from tb_attention.format import codec, manifest


def written(logdir):
    """{tag: (manifest, blobs)} of every probe event, and {tag: {metric: [L, H]}} of the metrics, and
    {tag: plugin content} of the metric series' first event, under `logdir`."""
    import json

    probes, metrics, contents = {}, {}, {}
    for path in sorted(glob.glob(f"{logdir}/**/events.*", recursive=True)):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tensor.string_val:
                    blobs = list(value.tensor.string_val)
                    probes[value.tag] = (manifest.decode(blobs[0]), blobs)
                elif "/_" in value.tag and not value.tag.endswith("/__crc"):
                    probe, name = value.tag.rsplit("/_", 1)
                    shape = [d.size for d in value.tensor.tensor_shape.dim]
                    array = np.frombuffer(value.tensor.tensor_content, "<f4").reshape(shape)
                    metrics.setdefault(probe, {})[name] = array
                    if value.metadata.plugin_data.content:
                        contents.setdefault(probe, {})[name] = json.loads(value.metadata.plugin_data.content)
    return probes, metrics, contents


def _container(blob):
    return codec.decompress(blob) if bytes(blob[:4]) == b"TBAZ" else blob


def slot(m, blobs, layer):
    """(meta, arrays) of a q/k-only layer's recompute container."""
    return codec.decode_recompute(_container(blobs[1 + layer]), m.num_heads, m.query_len, m.key_len)


def rebuild(m, blobs, layer):
    """float32 [H, Q, K]: the weights of a stored layer as a reader gets them (decoded cbrt8, or rebuilt from q/k
    with the stored per-row normaliser)."""
    if m.weights_stored(layer):
        return codec.decode_attention(_container(blobs[1 + layer]))
    _, arrays = slot(m, blobs, layer)
    qk = codec.unpack(_container(blobs[1 + m.num_layers + layer]))[1]
    q, k = qk["queries"], qk["keys"]
    spec = recompute.Spec.from_layer(m.layers[layer], m.num_heads, m.num_kv_heads, bias=arrays.get("bias"))
    return np.stack(
        [recompute.head_weights(spec, q[h], k[h // spec.group], h, lse=arrays["lse"][h]) for h in range(m.num_heads)]
    )


def within_bound(rebuilt, real):
    """Every row within the recompute bound: 1 % of that row's maximum."""
    return recompute.row_errors(rebuilt, real) <= recompute.RECOMPUTE_BOUND
