"""Video data: UCF-101 read from real .avi files (MPEG-4 in AVI, as UCF-101's Xvid files) and the official
split-list formats, written here in miniature; the procedural moving shapes; clips through a VAE frame by
frame; and the missing-data error."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablations.data import DatasetMissing, dataset_present, open_dataset
from ablations.latents import LatentShards, decode, encode_moments, write_latent_shards
from ablations.video_data import UCF101, VideoShapes, clip_indices, resize_center_crop

av = pytest.importorskip("av", reason="UCF-101 is decoded with PyAV: pip install av")


def write_avi(path, frames: int, width: int = 40, height: int = 30, left_right: bool = False) -> None:
    """An MPEG-4 AVI whose frame k is flat grey 20 + 5 k (so the decoded brightness tells the frame index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 1  # every frame a key frame: flat greys survive exactly enough
        stream.bit_rate = 20_000_000
        for k in range(frames):
            image = np.full((height, width, 3), 20 + 5 * k, dtype=np.uint8)
            if left_right:  # left quarter black, right quarter white: a centre crop of the height keeps neither
                image[:, : width // 4] = 0
                image[:, -(width // 4) :] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def ucf_root(tmp_path):
    """Three classes (one spelt two ways, as the official lists spell HandstandPushups), official list formats."""
    root = tmp_path / "data"
    videos = root / "UCF-101"
    write_avi(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi", 40)
    write_avi(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi", 40)
    write_avi(videos / "HandStandPushups" / "v_HandStandPushups_g08_c01.avi", 6)  # short: frames repeat
    write_avi(videos / "YoYo" / "v_YoYo_g01_c01.avi", 40, width=64, height=16, left_right=True)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n")  # CRLF as shipped
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nYoYo/v_YoYo_g01_c01.avi\n")
    return root


def _frame_greys(clip: torch.Tensor) -> list[int]:
    return [round((clip[:, k].float().mean().item() - 20) / 5) for k in range(clip.shape[1])]


def test_ucf101_reads_avi_clips_at_the_interval(ucf_root):
    train = UCF101(ucf_root, "train", size=16, frames=4, interval=3)
    assert len(train) == 2 and train.num_classes == 3
    clip, label = train[0]
    assert clip.shape == (3, 4, 16, 16) and clip.dtype == torch.uint8 and label == 0
    greys = _frame_greys(clip)
    assert np.diff(greys).tolist() == [3, 3, 3] and 0 <= greys[0] <= 40 - 10  # every 3rd frame of the window
    assert torch.equal(train[0][0], clip)  # the same index is the same clip
    short, label = train[1]  # 6 frames < the 10-frame window: 4 frames spread over the video
    assert label == 1 and _frame_greys(short) == clip_indices(6, 4, 3, 0.0) == [0, 2, 3, 5]
    test = UCF101(ucf_root, "test", size=16, frames=4, interval=3)
    assert [label for _, label in test.samples] == [0, 2]  # test lists carry no label: from the class folder
    cropped, _ = test[1]  # 64x16: the centre 16x16 (columns 24-39); the black and white side quarters are cut away
    assert cropped.shape == (3, 4, 16, 16) and np.diff(_frame_greys(cropped)).tolist() == [3, 3, 3]
    assert cropped[:, :, :, 0].float().mean() > 10 and cropped[:, :, :, -1].float().mean() < 245


def test_ucf101_through_open_dataset_and_missing_data_names_the_download(ucf_root, tmp_path):
    assert dataset_present("ucf101", ucf_root) and not dataset_present("ucf101", tmp_path)
    data = open_dataset("ucf101", ucf_root, size=8, frames=2)
    assert data[0][0].shape == (3, 2, 8, 8) and data.interval == 3  # Latte's UCF-101 interval by default
    with pytest.raises(DatasetMissing) as missing:
        open_dataset("ucf101", tmp_path, size=8)
    message = str(missing.value)
    assert "\n" not in message and "UCF101.rar" in message and "UCF101TrainTestSplits-RecognitionTask.zip" in message
    assert str(tmp_path / "UCF-101") in message
    (ucf_root / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi").unlink()
    with pytest.raises(DatasetMissing, match="v_YoYo_g01_c01.avi is missing"):
        UCF101(ucf_root, "test", size=8, frames=2)[1]


def test_resize_center_crop_keeps_the_centre():
    clip = torch.zeros(3, 2, 20, 40, dtype=torch.uint8)
    clip[:, :, :, 10:30] = 200  # the centre half of the width
    out = resize_center_crop(clip, 10)  # 20x40 -> 10x20 -> columns 5..14: all of the bright centre
    assert out.shape == (3, 2, 10, 10) and out.float().mean() > 190


def test_video_shapes_move_and_are_deterministic():
    data = VideoShapes(size=16, frames=6, interval=2, length=40)
    clip, label = data[7]
    assert clip.shape == (3, 6, 16, 16) and clip.dtype == torch.uint8 and label == 7
    assert torch.equal(clip, VideoShapes(size=16, frames=6, interval=2, length=40)[7][0])
    assert (clip[:, 0] != clip[:, -1]).any()  # the shape moved
    assert data.MOTIONS[label // len(data.KINDS)] == "orbit" and data.num_classes == 10
    slow = VideoShapes(size=16, frames=6, interval=1, length=40)[7][0]
    assert torch.equal(slow[:, 0], clip[:, 0]) and torch.equal(slow[:, 2], clip[:, 1])  # interval = time step
    assert open_dataset("videoshapes", size=8, frames=3)[0][0].shape == (3, 3, 8, 8)


class PoolVAE(nn.Module):
    """An AutoencoderKL stand-in: mean = 2x2 average pool, fixed log-variance, nearest upsampling back."""

    config = SimpleNamespace(scaling_factor=0.5)

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def encode(self, x):
        mean = F.avg_pool2d(x, 2) * self.gain
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean, logvar=torch.full_like(mean, -3.0)))

    def decode(self, z):
        return SimpleNamespace(sample=F.interpolate(z, scale_factor=2))


def test_clips_go_through_the_vae_frame_by_frame(tmp_path):
    vae = PoolVAE()
    clips = torch.stack([VideoShapes(16, 5, length=8)[i][0] for i in range(3)])  # (3, 3, 5, 16, 16)
    moments = encode_moments(vae, clips)
    assert moments.shape == (3, 6, 5, 8, 8)
    for k in range(5):
        assert torch.equal(moments[:, :, k], encode_moments(vae, clips[:, :, k]))
    decoded = decode(vae, moments[:, :3] * 0.5)
    assert decoded.shape == (3, 3, 5, 16, 16) and (decoded.float() - clips.float()).abs().mean() < 8
    write_latent_shards(VideoShapes(16, 5, length=6), vae, tmp_path / "latents", batch=4)
    shards = LatentShards(tmp_path / "latents")
    assert len(shards) == 6 and shards[0][0].shape == (2, 6, 5, 8, 8)  # (flip views, 2C, T, h, w)
    assert torch.allclose(shards[1][0][1].float(), encode_moments(vae, clips[1:2].flip(-1))[0], atol=1e-2)
