"""neuron_view's model run: tokenize the sentence (pair), one forward pass inside `tb_attention.capture`, in eval
mode without gradients, with the model's training mode restored after."""


def run(model, tokenizer, sentence_a, sentence_b=None):
    """-> (capture, tokens) of one forward pass over `sentence_a` (and `sentence_b`)."""
    import torch

    from tb_attention.capture.session import capture

    if not isinstance(sentence_a, str) or (sentence_b is not None and not isinstance(sentence_b, str)):
        raise TypeError("neuron_view needs sentence_a (and optionally sentence_b) as strings")
    encoded = (
        tokenizer(sentence_a, sentence_b, return_tensors="pt")
        if sentence_b
        else tokenizer(sentence_a, return_tensors="pt")
    )
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            "neuron_view runs one encoder pass; for an encoder-decoder model run it yourself inside "
            "tb_attention.capture(model) (with decoder_input_ids) and call tba.show(cap, tokens=..., decoder_tokens=...)"
        )
    ids = encoded["input_ids"]
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    feed = {k: v.to(device) for k, v in encoded.items() if hasattr(v, "to")}
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture(model) as cap:
            model(**feed)
    finally:
        model.train(training)
    return cap, tokenizer.convert_ids_to_tokens(ids[0].tolist())
