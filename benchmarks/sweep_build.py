"""Tiny random models and inputs for every model type in transformers' auto mappings (used by capture_sweep.py).

`build(model_type)` returns `(model, inputs, notes)` or raises `CannotBuild` / `CannotFeed` with the reason. Configs are
the defaults shrunk (width 64, 4 heads, 2 layers of each distinct layer type, small windows so sliding masks bite);
inputs are chosen from the model's forward signature, one recipe per modality, and the first recipe the model's own
forward accepts is used.
"""

from __future__ import annotations

import inspect
import re

import torch

SEQ = 12  # text tokens: longer than the shrunk sliding windows (4) and chunk sizes, so those masks are exercised
WINDOW = 4


class CannotBuild(Exception):
    """No tiny config/model could be constructed."""


class CannotFeed(Exception):
    """The model was built but no input recipe ran through its forward."""


# Attribute name -> the value it is shrunk to (only ever made smaller; lists and None are left alone).
WIDTH = {
    "hidden_size": 64,
    "d_model": 64,
    "n_embd": 64,
    "embed_dim": 64,
    "dim": 64,
    "word_embed_proj_dim": 64,
    "projection_dim": 64,
    "intermediate_size": 64,
    "ffn_dim": 64,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "d_ff": 64,
    "n_inner": 64,
    "hidden_dim": 64,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "num_attention_heads": 4,
    "n_head": 4,
    "n_heads": 4,
    "num_heads": 4,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "num_key_value_heads": 2,
    "n_kv_heads": 2,
    "head_dim": 16,
    "d_kv": 16,
    "attention_head_dim": 16,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "sliding_window": WINDOW,
    "attention_window": WINDOW,
    "max_window_layers": 1,
}
DEPTH = {
    "num_hidden_layers": 2,
    "num_layers": 2,
    "n_layer": 2,
    "n_layers": 2,
    "encoder_layers": 2,
    "depth": 2,
    "decoder_layers": 2,
    "num_decoder_layers": 2,
    "num_encoder_layers": 2,
}
# Name endings shrunk like the names above (text_embed_dim, vision_hidden_size, qk_head_dim, ...).
SUFFIXES = {
    "hidden_size": 64,
    "embed_dim": 64,
    "intermediate_size": 64,
    "projection_size": 64,
    "projection_dim": 64,
    "head_dim": 16,
    "attention_heads": 4,
    "num_heads": 4,
    "_experts": 4,
    "codebook_dim": 64,
}
INIT_STD = 0.1  # larger than the usual 0.02, so that attention is not near-uniform and wrong terms show


def _shrink(d: dict, depth: bool) -> dict:
    """Shrink a config dict (recursively into nested config dicts)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and "model_type" in value:
            out[key] = _shrink(value, depth)
            continue
        target = _target(key, depth)
        if target is not None and isinstance(value, int) and not isinstance(value, bool) and value > target:
            value = target
        if key == "initializer_range" and isinstance(value, float):
            value = INIT_STD
        out[key] = value
    heads = out.get("num_attention_heads")
    if isinstance(heads, int) and isinstance(out.get("num_key_value_heads"), int):
        kv = out["num_key_value_heads"]
        out["num_key_value_heads"] = kv if kv and heads % kv == 0 else 1
    if depth:
        _reduce_layer_lists(d, out)
    patch, size = out.get("patch_size"), out.get("image_size")
    if isinstance(patch, int) and isinstance(size, int) and size > 4 * patch:
        out["image_size"] = 4 * patch  # a 4 x 4 patch grid: short sequences, same code paths
    if "depths" in out and isinstance(out["depths"], list):
        out["depths"] = [1] * len(out["depths"])
    if isinstance(out.get("num_heads"), list):
        # Swin-style stages double the width: heads 1, 2, 4, ... divide 64, 128, 256, ...
        out["num_heads"] = [min(v, 2**i) for i, v in enumerate(out["num_heads"])]
    if depth and (out.get("out_features") is not None or out.get("out_indices") is not None):
        out["out_features"] = out["out_indices"] = None  # the backbone's default stages, of the shrunk depth
    _fit_rope_sections(out)
    return out


def _fit_rope_sections(out: dict) -> None:
    """Multimodal RoPE splits head_dim / 2 into sections (t, h, w): rescale them to the shrunk head size."""
    head = out.get("head_dim") or (
        out["hidden_size"] // out["num_attention_heads"]
        if isinstance(out.get("hidden_size"), int) and isinstance(out.get("num_attention_heads"), int)
        else None
    )
    rope = out.get("rope_parameters")
    for params in [rope, *(rope.values() if isinstance(rope, dict) else [])]:
        sections = params.get("mrope_section") if isinstance(params, dict) else None
        if head and isinstance(sections, list) and sum(sections) != head // 2:
            target, total = head // 2, sum(sections)
            new = [max(1, v * target // total) for v in sections]
            new[0] += target - sum(new)
            params["mrope_section"] = new


def _target(key: str, depth: bool) -> int | None:
    if key in WIDTH:
        return WIDTH[key]
    if depth and key in DEPTH:
        return DEPTH[key]
    return next((v for suffix, v in SUFFIXES.items() if key.endswith(suffix)), None)


def _reduce_layer_lists(original: dict, out: dict) -> None:
    """Keep the first layer of each distinct type (at least two layers); per-layer lists follow."""
    n_key = next((k for k in ("num_hidden_layers", "num_layers", "n_layer") if isinstance(original.get(k), int)), None)
    if n_key is None:
        return
    n = original[n_key]
    types = original.get("layer_types")
    if isinstance(types, list) and len(types) == n:
        keep = sorted({types.index(t) for t in types})
        keep = keep if len(keep) >= 2 else list(range(min(2, n)))
    else:
        keep = list(range(min(n, out[n_key])))
    out[n_key] = len(keep)
    for key, value in original.items():
        if isinstance(value, list) and len(value) == n and n > len(keep) and key != "depths":
            out[key] = [value[i] for i in keep]
        elif isinstance(value, dict) and value and all(str(k).isdigit() and int(k) < n for k in value):
            # Per-layer settings keyed by layer index: keep those of the kept layers, renumbered.
            out[key] = {type(k)(keep.index(int(k))): v for k, v in value.items() if int(k) in keep}


def tiny_config(model_type: str, depth: bool = True):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    config = cls.from_dict(_shrink(cls().to_dict(), depth))
    _fit_vocab(config)
    _default_rope_sections(config)
    return config


def _default_rope_sections(config) -> None:
    """Multimodal RoPE without a configured split uses the full-size default (16, 24, 24): give the shrunk head
    its own (2, 3, 3)."""
    for c in [config, *(getattr(config, k, None) for k in getattr(config, "sub_configs", {}))]:
        rope = getattr(c, "rope_parameters", None)
        if "mrope_section" in getattr(c, "ignore_keys_at_rope_validation", ()) and isinstance(rope, dict):
            rope.setdefault("mrope_section", [2, 3, 3])


def _fit_vocab(config) -> None:
    """Placeholder tokens (image, video, audio) past the text vocabulary: real checkpoints resize the embeddings."""
    ids = [getattr(config, n) for n in dir(config) if n.endswith(("token_id", "token_index"))]
    ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 1_000_000]
    for target in (getattr(config, "text_config", None), config):
        vocab = getattr(target, "vocab_size", None)
        if isinstance(vocab, int) and ids and max(ids) >= vocab:
            target.vocab_size = max(ids) + 1


# -- which class ----------------------------------------------------------------------------------------------------

# Preference after the base model: heads that keep the model's own forward (a base model may be missing).
_MAPPINGS = ["MODEL_MAPPING_NAMES"]


def model_classes(model_type: str) -> list[str]:
    import transformers.models.auto.modeling_auto as ma

    names = [n for n in dir(ma) if n.startswith("MODEL_") and n.endswith("_MAPPING_NAMES")]
    names = _MAPPINGS + sorted(n for n in names if n not in _MAPPINGS)
    found = []
    for n in names:
        value = getattr(ma, n).get(model_type)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v and v not in found:
                found.append(v)
    return found


def all_model_types() -> list[str]:
    import transformers.models.auto.modeling_auto as ma

    types = set()
    for n in dir(ma):
        if n.startswith("MODEL_") and n.endswith("_MAPPING_NAMES"):
            types |= set(getattr(ma, n))
    return sorted(types)


def _composite_config(model_type: str):
    """Configs that are built from two others (their defaults are empty)."""
    import transformers as T

    if model_type not in ("encoder-decoder", "vision-encoder-decoder", "speech-encoder-decoder"):
        return None
    text = T.BertConfig(**{**_shrink(T.BertConfig().to_dict(), True), "is_decoder": True, "add_cross_attention": True})
    if model_type == "encoder-decoder":
        enc = T.BertConfig(**_shrink(T.BertConfig().to_dict(), True))
        return T.EncoderDecoderConfig.from_encoder_decoder_configs(enc, text)
    if model_type == "vision-encoder-decoder":
        enc = T.ViTConfig(**{**_shrink(T.ViTConfig().to_dict(), True), "image_size": 32, "patch_size": 8})
        return T.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, text)
    if model_type == "speech-encoder-decoder":
        enc = T.Wav2Vec2Config(**_shrink(T.Wav2Vec2Config().to_dict(), True))
        return T.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(enc, text)
    return None


def build(model_type: str, seed: int = 0):
    """(model in eval mode, inputs, notes). The default depth is tried only when the shrunk config is refused."""
    import transformers as T

    classes = model_classes(model_type)
    if not classes:
        raise CannotBuild("no model class in the auto mappings")
    built, errors = False, []
    for depth in (True, False):  # the configured depth when the shrunk one is refused (HRM derives its stacks)
        try:
            config = _composite_config(model_type) or tiny_config(model_type, depth)
        except Exception as e:  # noqa: BLE001 - any config error is a reason to report
            errors.append(f"config: {_short(e)}")
            continue
        for name in classes[: 2 if depth else 1]:
            cls = getattr(T, name, None)
            if cls is None:
                errors.append(f"{name}: not exported")
                continue
            try:
                torch.manual_seed(seed)
                model = cls(config).eval()
            except Exception as e:  # noqa: BLE001
                errors.append(f"{name}: {_short(e)}")
                continue
            built = True
            try:
                inputs = feed(model)
            except Exception as e:  # noqa: BLE001 - CannotFeed, or a recipe that crashes the builder itself
                errors.append(f"{name}: {e if isinstance(e, CannotFeed) else _short(e)}")
                continue
            return model, inputs, f"{name}" + ("" if depth else " (default depth)")
    reason = "; ".join(dict.fromkeys(errors))[:300]
    raise CannotFeed(reason) if built else CannotBuild(reason)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:160]


# -- inputs ---------------------------------------------------------------------------------------------------------


def _sub(config, *names):
    for n in names:
        sub = getattr(config, n, None)
        if sub is not None and not isinstance(sub, (int, float, str, list, dict)):
            return sub
    return config


def _first(config, names, default):
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def _ids(config, batch=1, length=SEQ, seed=0):
    text = _sub(config, "text_config", "decoder")
    vocab = _first(text, ["vocab_size"], None) or _first(config, ["vocab_size"], 100)
    specials = set()
    for n in dir(config):
        if n.endswith(("token_id", "token_index")):
            v = getattr(config, n, None)
            specials.update(v if isinstance(v, (list, tuple)) else [v])
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(3, vocab - 1), min(vocab, 1000), (batch, length), generator=g)
    for s in specials:
        if isinstance(s, int):
            ids[ids == s] = 4 if s != 4 else 5
    return ids


def _image_size(vision) -> tuple[int, int]:
    size = _first(vision, ["image_size", "img_size", "input_size"], 32)
    if isinstance(size, dict):
        size = (size.get("height", 32), size.get("width", 32))
    if isinstance(size, (list, tuple)):
        return int(size[-2]), int(size[-1])
    return int(size), int(size)


def _pixels(config, batch=1, frames=None):
    vision = _sub(config, "vision_config", "encoder", "backbone_config")
    h, w = _image_size(vision)
    channels = _first(vision, ["num_channels", "in_channels", "in_chans"], 3)
    g = torch.Generator().manual_seed(1)
    shape = (batch, channels, h, w) if frames is None else (batch, frames, channels, h, w)
    return torch.randn(*shape, generator=g)


def _audio_features(config):
    audio = _sub(config, "audio_config", "encoder")
    bins = _first(audio, ["num_mel_bins", "feature_size", "input_feat_per_channel", "n_mels"], 80)
    frames = _first(audio, ["max_source_positions"], 32)
    frames = min(int(frames) * 2, 3000) if frames else 64
    g = torch.Generator().manual_seed(2)
    return torch.randn(1, bins, frames, generator=g), torch.randn(1, 64, bins, generator=g)


def _waveform():
    return torch.randn(1, 16000, generator=torch.Generator().manual_seed(3))


def recipes(model) -> list[tuple[str, dict]]:
    """Candidate inputs for the model's forward, most specific first."""
    config = model.config
    params = inspect.signature(model.forward).parameters
    has = lambda n: n in params  # noqa: E731
    out = []
    decoder = {}
    if has("decoder_input_ids") and (getattr(config, "is_encoder_decoder", False) or "decoder" in config.sub_configs):
        decoder = {"decoder_input_ids": _ids(config, length=5, seed=1)}
    if has("pixel_values") and has("input_ids") and has("image_grid_thw"):
        out.append(("image patches+grid+text", _grid_image_text(config, decoder)))
    if has("pixel_values") and has("input_ids"):
        extra = {"_token_types": True} if has("token_type_ids") else {}
        out += [("image+text", {**_image_text(model, config, decoder), **extra})]
    if has("pixel_values"):
        out.append(("image", {"pixel_values": _pixels(config), **decoder}))
        out.append(("video", {"pixel_values": _pixels(config, frames=8), **decoder}))
    if has("pixel_values_videos") and has("input_ids"):
        out.append(("video+text", {"input_ids": _ids(config), "pixel_values_videos": _pixels(config, frames=8)}))
    if has("input_features"):
        a, b = _audio_features(config)
        out.append(("audio features", {"input_features": a, **decoder}))
        out.append(("audio features (time first)", {"input_features": b, **decoder}))
    if has("input_values"):
        out.append(("waveform", {"input_values": _waveform(), **decoder}))
    if has("input_ids"):
        extra = {"bbox": _bbox()} if has("bbox") else {}
        out.append(("text", {"input_ids": _ids(config), **extra, **decoder}))
    if has("inputs_embeds") and not has("input_ids"):
        size = _first(config, ["hidden_size", "d_model"], 64)
        out.append(("embeddings", {"inputs_embeds": torch.randn(1, SEQ, size)}))
    return [(n, r) for n, r in out if r is not None]


def _bbox():
    g = torch.Generator().manual_seed(4)
    lo = torch.randint(0, 500, (1, SEQ, 2), generator=g)
    return torch.cat([lo, lo + torch.randint(1, 400, (1, SEQ, 2), generator=g)], -1)


# "Image features and image tokens do not match, tokens: 64, features: 36864" (both may count hidden elements).
_FEATURES = re.compile(r"tokens:?\s*(\d+),?\s*features:?\s*(\d+)", re.IGNORECASE)


def _image_text(model, config, decoder):
    token = _first(config, ["image_token_id", "image_token_index"], None)
    ids = _ids(config)
    if token is None:
        return {"input_ids": ids, "pixel_values": _pixels(config), **decoder}
    inputs = {"input_ids": ids, "pixel_values": _pixels(config), "_image_token": token, "_text": ids, **decoder}
    return _with_image_tokens(inputs, 1)


def _grid_image_text(config, decoder):
    """Qwen2-VL-style inputs: flattened patches of a 4 x 4-merge-unit image plus its (t, h, w) grid."""
    vision = _sub(config, "vision_config")
    patch = _first(vision, ["patch_size"], 14)
    temporal = _first(vision, ["temporal_patch_size"], 1)
    merge = _first(vision, ["spatial_merge_size"], 1)
    channels = _first(vision, ["in_channels", "num_channels", "in_chans"], 3)
    side = 2 * merge
    g = torch.Generator().manual_seed(5)
    pixels = torch.randn(side * side, channels * temporal * patch * patch, generator=g)
    token = _first(config, ["image_token_id", "image_token_index"], 0)
    inputs = {"_text": _ids(config), "_image_token": token, "pixel_values": pixels, **decoder}
    inputs["image_grid_thw"] = torch.tensor([[1, side, side]])
    inputs["_mm_types"] = True
    return _with_image_tokens(inputs, 1)


def _with_image_tokens(inputs: dict, count: int) -> dict:
    """The text ids with ``count`` image placeholder tokens after the first two."""
    ids = inputs["_text"]
    ids = torch.cat([ids[:, :2], torch.full((ids.shape[0], count), inputs["_image_token"]), ids[:, 2:]], dim=1)
    out = {**inputs, "input_ids": ids}
    if inputs.get("_mm_types"):
        out["mm_token_type_ids"] = (ids == inputs["_image_token"]).long()  # 1 marks the image placeholders
    if inputs.get("_token_types"):
        # PaliGemma's prefix-LM convention: 0 = image and prompt (bidirectional), 1 = the suffix (causal).
        out["token_type_ids"] = (torch.arange(ids.shape[1]) >= ids.shape[1] - ids.shape[1] // 3).long()[None]
    return out


def feed(model) -> dict:
    """The first recipe whose forward runs (under the model's default attention, no gradients)."""
    errors = []
    for name, inputs in recipes(model):
        tried, queue = set(), [1 if "_image_token" in inputs else 0]
        while queue:
            count = queue.pop(0)
            tried.add(count)
            candidate = _with_image_tokens(inputs, count) if count else inputs
            run = {k: v for k, v in candidate.items() if not k.startswith("_")}
            try:
                with torch.no_grad():
                    model(**run)
                return run
            except Exception as e:  # noqa: BLE001
                match = _FEATURES.search(str(e))
                if count and match and int(match.group(1)):
                    # The numbers may count tokens, or tokens x hidden size: try both readings.
                    n = int(match.group(2)) * count // int(match.group(1))
                    hidden = _first(_sub(model.config, "text_config"), ["hidden_size"], 0)
                    guesses = [n] + ([n // hidden] if hidden and n % hidden == 0 else [])
                    queue += [g for g in guesses if g > 0 and g not in tried and g not in queue and g < 5000]
                    if queue:
                        continue
                errors.append(f"{name}: {_short(e)}")
    raise CannotFeed("no input recipe ran: " + " | ".join(errors)[:400])
