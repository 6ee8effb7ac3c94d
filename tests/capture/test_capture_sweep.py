"""The capture sweep (benchmarks/capture_sweep.py) on a fixed sample of architectures, at least one per failure class
of issue 14: tiny random config, one forward under the default implementation inside the capture, outputs
bit-identical, every attention field of transformers' eager `output_attentions` reproduced (<= 1e-5), and the stored
q/k with the recompute parameters reproducing the weights (<= 1e-3). The full sweep over every model type is the
benchmark; its page is docs/capture_coverage.md."""

import pytest
import torch

from benchmarks import capture_sweep, sweep_check

QK, NO_QK, NONE = "q/k", "weights only", "no attention"

SAMPLE = {
    # plain encoders, decoders, encoder-decoders, ViT, a VLM
    "bert": QK,
    "gpt2": QK,
    "llama": QK,
    "bart": QK,
    "whisper": QK,
    "vit": QK,
    "llava": QK,
    # several towers in one model: one stream per tower
    "clip": QK,
    "siglip": QK,
    "owlvit": QK,
    "altclip": QK,
    "chinese_clip": QK,
    "clipseg": QK,
    "aimv2": QK,
    "blip": NO_QK,  # outside the interface: the fallback
    # composite encoder-decoders, and a model mixing interface and non-interface attention
    "encoder-decoder": QK,
    "speech-encoder-decoder": QK,
    "vision-encoder-decoder": QK,
    "bigbird_pegasus": NO_QK,  # its encoder's block-sparse attention has no interface: weights from eager
    # one module for several layers, interleaved and looped stacks, one module calling attention twice
    "albert": QK,
    "minimax": QK,
    "hrm_text": QK,
    "diffllama": QK,
    # masks and terms: prefix-LM, sliding windows with sinks, relative positions, softcap, buckets, sinks, bands
    "paligemma": QK,
    "granite_swa": QK,
    "granitemoe_swa": QK,
    "parakeet_ctc": QK,
    "wav2vec2-conformer": QK,
    "gemma2": QK,
    "embedding_gemma2": QK,
    "t5": QK,
    "gpt_oss": QK,
    "mistral": QK,
    # spatial-reduction attention: keys from a downsampled grid
    "segformer": QK,
    "pvt_v2": NO_QK,
    # the fallback: a second eager pass, outputs untouched
    "got_ocr2": NO_QK,
    "granite_speech": NO_QK,
    "deberta-v2": NO_QK,
    # no attention weights to give: a clear error
    "rwkv": NONE,
    "yoso": NONE,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares its cores
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model_type", sorted(SAMPLE))
def test_sweep_sample(model_type):
    row = capture_sweep.run_one(model_type)
    expected = SAMPLE[model_type]
    if expected == NONE:
        assert row["status"] == "no attention" and "has no attention to capture" in row["reason"], row
        return
    assert row["status"] == "exact", row
    assert row["identical"] and row["max_diff"] <= sweep_check.EXACT
    if expected == QK:
        assert row["method"] == "attention_interface" and row["qk"] is not None, row
        assert row["qk"] <= sweep_check.QK_EXACT, row
    else:
        assert row["qk"] is None or row["method"] == "attention_interface", row


def test_the_sample_covers_every_failure_class_and_about_forty_architectures():
    assert 38 <= len(SAMPLE) <= 45
    assert {QK, NO_QK, NONE} == set(SAMPLE.values())


def test_the_coverage_page_renders_totals_and_one_row_per_model_type():
    rows = [
        {"model_type": "a", "status": "exact", "method": "attention_interface", "max_diff": 0.0, "qk": 0.0},
        {"model_type": "b", "status": "inexact", "method": "attention_interface", "max_diff": 0.5, "qk": 0.0},
        {"model_type": "c", "status": "cannot feed", "reason": "no input recipe | ran"},
    ]
    totals = capture_sweep.totals(rows)
    assert totals["built, fed, with eager weights to compare"] == 2 and totals["exact, %"] == 50.0
    assert totals["could not be built or fed"] == 1
    page = capture_sweep.render(rows, seconds=120)
    assert page.count("\n| a |") == page.count("\n| b |") == page.count("\n| c |") == 1
    assert "no input recipe \\| ran" in page and "took 2 min" in page
