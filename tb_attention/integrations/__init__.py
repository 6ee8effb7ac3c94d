"""Training-framework integrations: a Hugging Face ``TrainerCallback``, a Lightning callback, and the probe runner
they share. Imported lazily: ``from tb_attention.integrations.hf import AttentionCallback``."""
