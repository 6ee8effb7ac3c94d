"""TensorBoard entry point. Imports nothing heavy: an exception here would stop TensorBoard from starting."""

from tensorboard.plugins import base_plugin

PLUGIN_NAME = "attention"  # duplicated from metadata.py so this module stays import-light


class AttentionLoader(base_plugin.TBLoader):
    def fix_flags(self, flags):
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
