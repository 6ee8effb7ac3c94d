"""The probe image of ViT steps: writer validation, manifest, `image` route (both data loaders), real ViT capture."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from tb_attention import AttentionWriter
from tb_attention.format import metadata
from tests.conftest import softmax_attention

L, H, ROWS, COLS, SPECIAL = 2, 3, 3, 4, 1
T = SPECIAL + ROWS * COLS
TOKENS = ["[CLS]"] + [f"patch({r},{c})" for r in range(ROWS) for c in range(COLS)]


def _picture(h=24, w=32):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], -1).astype(np.uint8)


def _png_pixels(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.get_data())))


@pytest.fixture
def logdir(tmp_path, rng):
    img = _picture()
    grid = {"rows": ROWS, "cols": COLS, "patch_size": 8}
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("vit", softmax_attention(rng, L, H, T), tokens=TOKENS, step=0, patch_grid=grid, image=img)
        q = rng.normal(size=(L, H, T, 4)).astype(np.float32)
        w.add_attention(
            "vit",
            softmax_attention(rng, L, H, T),
            tokens=TOKENS,
            step=1,
            patch_grid=(ROWS, COLS),
            image=img[..., 0].astype(np.float32) / 255,
            queries=q,
            keys=q,
        )  # grey, float
        w.add_attention("vit", softmax_attention(rng, L, H, T), tokens=TOKENS, step=2, patch_grid=(ROWS, COLS))
    return tmp_path, img


def test_image_is_stored_as_png_and_served(logdir, load):
    path, img = logdir
    loaded = load(path)
    m0 = loaded.get("tokens", run="run", tag="vit", step=0).get_json()
    assert m0["patch_grid"] == {"rows": ROWS, "cols": COLS, "num_special": SPECIAL, "patch_size": [8, 8]}
    assert m0["image"] == {"index": metadata.image_index(L, False), "width": 32, "height": 24}
    np.testing.assert_array_equal(_png_pixels(loaded.get("image", run="run", tag="vit", step=0)), img)
    # With q/k the image follows the q/k blobs; a float grey image is rounded to uint8.
    m1 = loaded.get("tokens", run="run", tag="vit", step=1).get_json()
    assert m1["image"]["index"] == metadata.image_index(L, True) == 1 + 2 * L
    assert m1["patch_grid"]["patch_size"] is None
    np.testing.assert_array_equal(_png_pixels(loaded.get("image", run="run", tag="vit", step=1)), img[..., 0])
    # Attention and q/k routes are unaffected by the extra blob.
    assert loaded.get("attention", run="run", tag="vit", step=1, layer=L - 1).status_code == 200
    assert loaded.get("qk", run="run", tag="vit", step=1, layer=L - 1).status_code == 200


def test_step_without_image_is_404_with_a_message(logdir, load):
    loaded = load(logdir[0])
    resp = loaded.get("image", run="run", tag="vit", step=2)
    assert resp.status_code == 404 and "has no image" in resp.get_data(as_text=True)
    assert "image" not in loaded.get("tokens", run="run", tag="vit", step=2).get_json()
    assert loaded.get("image", run="run", tag="vit", step=9).status_code == 404
    assert loaded.get("image", run="run", tag="vit").status_code == 400


@pytest.mark.parametrize("damage", ["flip", "truncate", "not_png"])
def test_damaged_png_is_422(tmp_path, rng, load, damage, monkeypatch):
    from tb_attention.format import image as image_mod

    real = image_mod.encode_png

    def broken(img):
        png = bytearray(real(img))
        if damage == "flip":
            png[len(png) // 2] ^= 0xFF
        elif damage == "truncate":
            del png[len(png) - 30 :]
        else:
            png[:8] = b"GIF89a.."
        return bytes(png)

    monkeypatch.setattr(image_mod, "encode_png", broken)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention(
            "vit", softmax_attention(rng, L, H, T), tokens=TOKENS, step=0, patch_grid=(ROWS, COLS), image=_picture()
        )
    loaded = load(tmp_path)
    resp = loaded.get("image", run="run", tag="vit", step=0)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert "step 0" in resp.get_data(as_text=True) and "Traceback" not in resp.get_data(as_text=True)
    assert loaded.get("attention", run="run", tag="vit", step=0, layer=0).status_code == 200


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(image=np.zeros((24, 32, 3), np.uint8)), ValueError, "needs patch_grid"),
        (dict(image=np.zeros((3, 24, 32), np.uint8), patch_grid=(ROWS, COLS)), ValueError, "channels must come last"),
        (dict(image=np.zeros((24, 32, 4), np.uint8), patch_grid=(ROWS, COLS)), ValueError, "shape"),
        (dict(image=np.zeros((2, 24, 32, 3), np.uint8), patch_grid=(ROWS, COLS)), ValueError, "shape"),
        (dict(image=np.zeros((24, 32), np.int64), patch_grid=(ROWS, COLS)), TypeError, "uint8"),
        (dict(image=np.full((24, 32), np.nan, np.float32), patch_grid=(ROWS, COLS)), ValueError, "NaN"),
        (dict(image=np.full((24, 32), 2.0, np.float32), patch_grid=(ROWS, COLS)), ValueError, r"\[0, 1\]"),
        (dict(image=[[0, 1]], patch_grid=(ROWS, COLS)), TypeError, "numpy array"),
        (
            dict(image=np.zeros((16, 32), np.uint8), patch_grid={"rows": ROWS, "cols": COLS, "patch_size": 8}),
            ValueError,
            "needs at least 32x24",
        ),
        (dict(patch_grid=(4, 4)), ValueError, "more patches"),
        (dict(patch_grid={"rows": ROWS, "cols": COLS, "num_special": 2}), ValueError, "num_special"),
    ],
)
def test_bad_image_or_grid_is_refused_before_writing(tmp_path, rng, kwargs, error, match):
    with AttentionWriter(str(tmp_path / "run")) as w:
        with pytest.raises(error, match=match):
            w.add_attention("vit", softmax_attention(rng, 1, H, T), tokens=TOKENS, step=0, **kwargs)
        w.add_attention("vit", softmax_attention(rng, 1, H, T), tokens=TOKENS, step=0)  # step 0 still free


def test_real_vit_capture_logs_its_image(tmp_path, load):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import tb_attention

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    model = transformers.ViTModel(config).eval()
    pixels = torch.randn(2, 3, 16, 12)  # not square: rows and columns must not be swapped; two rows
    with torch.no_grad(), tb_attention.capture(model) as cap:
        model(pixel_values=pixels, interpolate_pos_encoding=True)
    own = [np.full((16, 12, 3), 200, np.uint8), np.full((16, 12), 7, np.uint8)]
    with AttentionWriter(str(tmp_path / "run")) as w:
        assert w.add_capture("vit", cap, step=3) == ["vit/0", "vit/1"]
        w.add_capture("mine", cap, step=3, image=own)  # one image per batch row replaces the captured ones
    loaded = load(tmp_path)
    m = loaded.get("tokens", run="run", tag="vit/1", step=3).get_json()
    assert m["patch_grid"] == {"rows": 4, "cols": 3, "num_special": 1, "patch_size": [4, 4]}
    assert m["tokens"][0] == "[CLS]" and m["tokens"][1 + 1 * 3 + 2] == "patch(1,2)"
    assert m["image"] == {"index": metadata.image_index(2, True), "width": 12, "height": 16}
    for row in range(2):
        got = _png_pixels(loaded.get("image", run="run", tag=f"vit/{row}", step=3))
        np.testing.assert_array_equal(got, cap.vision.images[row])
        np.testing.assert_array_equal(_png_pixels(loaded.get("image", run="run", tag=f"mine/{row}", step=3)), own[row])
    assert not np.array_equal(cap.vision.images[0], cap.vision.images[1])
    assert json.loads(loaded.get("tokens", run="run", tag="mine/0", step=3).get_data())["patch_grid"]["rows"] == 4


def test_image_is_refused_for_a_capture_without_patch_grid(tmp_path):
    torch = pytest.importorskip("torch")
    import tb_attention

    layer = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 5, 8)
    with torch.no_grad(), tb_attention.capture(layer) as cap:
        layer(x, x, x)
    with AttentionWriter(str(tmp_path / "run")) as w, pytest.raises(ValueError, match="ViT captures"):
        w.add_capture("mha", cap, step=0, tokens=list("abcde"), image=np.zeros((8, 8), np.uint8))
