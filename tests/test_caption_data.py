"""Caption data sets (ablations.caption_data): the two folder layouts, webdataset shards, PixArt-alpha's
resize + centre crop, the built-in captioned-shapes, and bad input as one-line errors."""

from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

from ablations.caption_data import CaptionedShapes, pixart_resize_crop
from ablations.data import dataset_present, open_dataset
from mambabench.errors import UserError


def _image(path, w=40, h=30, colour=(200, 10, 10)):
    Image.new("RGB", (w, h), colour).save(path)


def test_pixart_resize_crop_is_resize_short_side_then_centre_crop():
    ramp = np.tile(np.arange(80, dtype=np.uint8)[None, :, None], (40, 1, 3))  # 80 wide, 40 high
    out = pixart_resize_crop(Image.fromarray(ramp), 20)
    assert out.size == (20, 20)
    column = np.asarray(out)[0, :, 0]
    assert 25 < column.mean() < 55  # the middle half of the ramp, not its left edge


def test_captions_jsonl_layout(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.jpg", 30, 50)
    rows = [{"file": "a.png", "caption": "a photo of a red  square"}, {"file": "b.jpg", "caption": "a cat"}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = open_dataset(f"captions:{tmp_path}", size=16)
    assert data.captions == ["a photo of a red square", "a cat"]
    image, index = data[1]
    assert image.shape == (3, 16, 16) and image.dtype.is_floating_point is False and index == 1
    assert dataset_present(f"captions:{tmp_path}")


def test_txt_beside_each_image_layout(tmp_path):
    _image(tmp_path / "x.png")
    (tmp_path / "x.txt").write_text("a photo of a dog\n")
    data = open_dataset(f"captions:{tmp_path}", size=8)
    assert data.captions == ["a photo of a dog"] and len(data) == 1


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"file": "missing.png", "caption": "x"}], "does not exist"),
        ([{"file": "a.png", "caption": "  "}], "empty caption"),
        (["not json"], "not a JSON line"),
    ],
)
def test_bad_caption_files_are_user_errors(tmp_path, rows, message):
    _image(tmp_path / "a.png")
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines))
    with pytest.raises(UserError, match=message):
        open_dataset(f"captions:{tmp_path}", size=8)


def test_image_without_txt_is_a_user_error(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    (tmp_path / "a.txt").write_text("a photo")
    with pytest.raises(UserError, match="b.png has no caption"):
        open_dataset(f"captions:{tmp_path}", size=8)


def _shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_webdataset_shards(tmp_path):
    _shard(tmp_path / "shard-000000.tar", [("s/0001.png", _png((255, 0, 0))), ("s/0001.txt", b"a red photo")])
    _shard(
        tmp_path / "shard-000001.tar",
        [("0002.jpg", _png((0, 0, 255))), ("0002.json", json.dumps({"caption": "a blue photo"}).encode())],
    )
    data = open_dataset(f"wds:{tmp_path}/shard-{{000000..000001}}.tar", size=12)
    assert data.captions == ["a red photo", "a blue photo"]
    image, index = data[1]
    assert image.shape == (3, 12, 12) and index == 1 and int(image[2].float().mean()) > 200
    with pytest.raises(UserError, match="missing shard"):
        open_dataset(f"wds:{tmp_path}/shard-{{000000..000002}}.tar", size=12)
    _shard(tmp_path / "bad.tar", [("0003.png", _png((0, 0, 0)))])
    with pytest.raises(UserError, match="no caption"):
        open_dataset(f"wds:{tmp_path}/bad.tar", size=12)


def test_captioned_shapes_is_deterministic_with_geneval_phrasing():
    a, b = CaptionedShapes(size=32, length=40), CaptionedShapes(size=32, length=40)
    assert a.captions == b.captions and (a[5][0] == b[5][0]).all()
    phrase = re.compile(
        r"a photo of (an? \w+ \w+|(two|three|four) \w+ \w+s"
        r"|an? \w+ \w+ (left of|right of|above|below|and) an? \w+ \w+)$"
    )
    assert all(phrase.match(c) for c in a.captions), [c for c in a.captions if not phrase.match(c)]
    kinds = {" and " in c for c in a.captions} | {" left of " in c or " above " in c for c in a.captions}
    assert kinds == {True, False}
    assert a[3][0].shape == (3, 32, 32)
    assert open_dataset("captioned-shapes", size=16, split="test").captions != a.captions[:10_000]
