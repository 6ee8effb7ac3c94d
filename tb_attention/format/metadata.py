"""Where the writer and the plugin meet: plugin name, tag layout and the versioned plugin content."""

import json

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "attention"
# Bump when a reader of the previous version could misread new data. 2: the manifest carries a checksum (TBM1).
# 3: a layer may store only q/k, its attention blob then a `recompute` container (format.md, "Storage per layer").
VERSION = 3

KIND_PROBE = "probe"
KIND_HEAD_STATS = "head_stats"
# One int64 scalar per metrics step: CRC-32 of that step's metric values (codec.stats_crc), so damaged bytes are
# found on the Rust loader too, which does not check event-record CRCs.
KIND_HEAD_STATS_CRC = "head_stats_crc"

# Blob 0 of a probe step is the manifest; layer l's attention is blob 1 + l and its q/k blob 1 + L + l.
MANIFEST_INDEX = 0


def attention_index(layer):
    return 1 + layer


def qk_index(layer, num_layers):
    return 1 + num_layers + layer


def image_index(num_layers, has_qk):
    return 1 + num_layers * (2 if has_qk else 1)


def stats_tag(probe_tag, stat):
    return f"{probe_tag}/_{stat}"


def stats_crc_tag(probe_tag):
    return f"{probe_tag}/__crc"


def create_summary_metadata(kind, description="", **fields):
    content = dict(version=VERSION, kind=kind, **fields)
    data_class = summary_pb2.DATA_CLASS_BLOB_SEQUENCE if kind == KIND_PROBE else summary_pb2.DATA_CLASS_TENSOR
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=json.dumps(content, sort_keys=True).encode()
        ),
        data_class=data_class,
    )


class UnsupportedVersionError(ValueError):
    pass


def parse_plugin_content(content):
    """Returns the content dict, or None for data this reader does not understand (skipped, never fatal).

    Raises UnsupportedVersionError for data from a newer writer, so the user learns to upgrade.
    """
    try:
        parsed = json.loads(content.decode("utf-8") if isinstance(content, bytes) else content)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("version"), int):
        return None
    if parsed["version"] > VERSION:
        raise UnsupportedVersionError(
            f"data written by a newer tb-attention (format version {parsed['version']}, this one reads "
            f"up to {VERSION}); upgrade tb-attention"
        )
    return parsed
