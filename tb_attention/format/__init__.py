"""The contract between the write side and the read side: plugin metadata and tag names, the versioned step
manifest, the binary containers, the PNG probe image and the event-record checksum (docs/format.md).

This is the only place where writer and reader meet. It imports nothing else of tb_attention."""
