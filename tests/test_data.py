"""The data readers on tiny data sets written in each real on-disk format, the built-in data set, and VAE
latent shards with a tiny diffusers AutoencoderKL saved the way the real ones are."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ablations.data import BuiltinShapes, DatasetMissing, center_crop_arr, dataset_present, open_dataset
from mambabench.errors import UserError


def _write_cifar(root, per_batch=3):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            "batch_label": name,
            "labels": labels,
            "data": data,
            "filenames": [f"{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)  # str keys, as the real (python-2 era) pickles read with latin1
        batches[name] = batch
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane"] * 10, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2
        )
    return batches


def test_cifar10_reader_decodes_planes(tmp_path):
    batches = _write_cifar(tmp_path)
    train = open_dataset("cifar10", tmp_path, size=32)
    assert len(train) == 15
    image, label = train[4]  # second item of data_batch_2
    row = batches["data_batch_2"]["data"][1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert torch.equal(image[0].flatten(), torch.from_numpy(row[:1024]))  # R plane first
    assert torch.equal(image[2, 31], torch.from_numpy(row[2048 + 31 * 32 : 3072]))  # last row of B
    assert label == batches["data_batch_2"]["labels"][1]
    assert len(open_dataset("cifar10", tmp_path, size=32, split="test")) == 3


def test_missing_data_sets_say_where_and_how(tmp_path):
    with pytest.raises(DatasetMissing, match="cifar-10-batches-py.*ablations data download cifar10"):
        open_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetMissing, match="img_align_celeba.*mmlab"):
        open_dataset("celeba", tmp_path, size=64)
    with pytest.raises(DatasetMissing, match="imagenet/train.*image-net.org"):
        open_dataset("imagenet", tmp_path, size=256)
    with pytest.raises(UserError, match="32x32"):
        _write_cifar(tmp_path)
        open_dataset("cifar10", tmp_path, size=64)
    assert dataset_present("cifar10", tmp_path) and not dataset_present("celeba", tmp_path)


def test_celeba_reader_crops_resizes_and_splits(tmp_path):
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = []
    for i, part in enumerate([0, 0, 0, 0, 1, 1, 2, 2], start=1):
        image = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        image[121 - 64 : 121 + 64, 89 - 64 : 89 + 64] = 200  # the crop box is flat grey: survives JPEG + resize
        Image.fromarray(image).save(folder / f"{i:06d}.jpg", quality=95)
        lines.append(f"{i:06d}.jpg {part}")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    train = open_dataset("celeba", tmp_path, size=64)
    assert len(train) == 4 and len(open_dataset("celeba", tmp_path, size=64, split="test")) == 2
    image, label = train[0]
    assert image.shape == (3, 64, 64) and label == 0
    assert (image.float() - 200).abs().mean() < 3  # only the 128 box around (89, 121) was kept


def test_imagenet_folder_classes_and_center_crop(tmp_path):
    rng = np.random.default_rng(2)
    for wnid, sizes in {"n02000000": [(300, 400)], "n01000000": [(700, 520), (260, 260)]}.items():
        (tmp_path / "imagenet" / "train" / wnid).mkdir(parents=True)
        for j, (h, w) in enumerate(sizes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imagenet" / "train" / wnid / f"{wnid}_{j}.JPEG")
    data = open_dataset("imagenet", tmp_path, size=256)
    assert data.classes == ["n01000000", "n02000000"] and len(data) == 3
    assert [label for _, label in data.samples] == [0, 0, 1]
    image, _ = data[0]
    assert image.shape == (3, 256, 256)
    wide = center_crop_arr(Image.new("RGB", (1200, 600)), 256)
    assert wide.size == (256, 256)


def test_builtin_is_deterministic_and_varied():
    a, b = BuiltinShapes(16, 100), BuiltinShapes(16, 100)
    assert torch.equal(a[7][0], b[7][0]) and a[7][1] == 7
    images = torch.stack([a[i][0] for i in range(20)]).float()
    assert images.std(0).mean() > 20  # not the same picture twenty times
    assert len({a[i][1] for i in range(20)}) == 10


def test_vae_latent_shards_round_trip(tmp_path):
    diffusers = pytest.importorskip("diffusers")  # in `.[dev]`; users' latent training needs it too
    from ablations.latents import LatentShards, decode, load_vae, sample_latent, write_latent_shards

    torch.manual_seed(0)
    tiny = diffusers.AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    tiny.save_pretrained(tmp_path / "vae")
    vae = load_vae(tmp_path / "vae")
    data = BuiltinShapes(16, 5)
    out = write_latent_shards(data, vae, tmp_path / "latents", flip=True, shard_size=2, batch=2)
    shards = LatentShards(out)
    assert len(shards) == 5 and shards.labels == [0, 1, 2, 3, 4]
    moments, _ = shards[3]
    assert moments.shape == (2, 8, 8, 8) and moments.dtype == torch.float16  # (views, mean+logvar, h, w)
    (out / "shard-00000.pt").write_bytes(b"kept")  # an existing shard is not rewritten on a rerun
    write_latent_shards(data, vae, out, flip=True, shard_size=2, batch=2)
    assert (out / "shard-00000.pt").read_bytes() == b"kept"
    latent = sample_latent(moments[:1], shards.scale, torch.Generator().manual_seed(0))
    assert decode(vae, latent).shape == (1, 3, 16, 16)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load_vae(tmp_path / "nowhere")
