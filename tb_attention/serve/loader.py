"""TensorBoard entry point. Imports nothing heavy: an exception here would stop TensorBoard from starting."""

from tensorboard.plugins import base_plugin

PLUGIN_NAME = "attention"  # duplicated from metadata.py so this module stays import-light


class AttentionLoader(base_plugin.TBLoader):
    def define_flags(self, parser):
        group = parser.add_argument_group("tb-attention")
        group.add_argument(
            "--attention_cache_dir",
            metavar="PATH",
            help="local folder for the Q/K embedding layout cache (default: <logdir>/.tb-attention-cache for a "
            "writable local logdir, else a folder under ~/.cache; env TB_ATTENTION_CACHE_DIR)",
        )
        group.add_argument(
            "--attention_cache_mb",
            type=float,
            metavar="MB",
            help="bound on the layout cache's size; least recently used files go first (default 512; env "
            "TB_ATTENTION_CACHE_MB)",
        )

        group.add_argument(
            "--attention_tile_cache_mb",
            type=float,
            metavar="MB",
            help="bound on the memory kept for matrix tiles, thumbnails and top-k answers (default 256)",
        )

    def fix_flags(self, flags):
        for name in ("attention_cache_mb", "attention_tile_cache_mb"):
            mb = getattr(flags, name, None)
            if mb is not None and not (0 < mb < float("inf")):
                raise base_plugin.FlagsError(f"--{name} must be a positive number, got {mb}")
        # TensorBoard keeps only 10 steps per blob-sequence tag unless told otherwise; a step slider
        # needs them all. An explicit --samples_per_plugin attention=N still wins.
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(PLUGIN_NAME, 0)

    def load(self, context):
        from tb_attention.format import crc
        from tb_attention.serve.plugin import AttentionPlugin

        crc.install()  # the Python data loader checks every record's CRC

        return AttentionPlugin(context)
