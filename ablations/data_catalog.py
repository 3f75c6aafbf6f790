"""The names of the data sets and the error a missing one raises: shared by the image readers
(``ablations.data``, which opens any set by name) and the video readers (``ablations.video_data``)."""

from __future__ import annotations

from mambabench.errors import UserError

DATASETS = ("builtin", "cifar10", "celeba", "imagenet")  # ablations.data
VIDEO_DATASETS = ("videoshapes", "ucf101")  # ablations.video_data
CAPTION_DATASETS = ("captioned-shapes",)  # ablations.caption_data (also captions:<dir>, wds:<pattern>)


class DatasetMissing(UserError, FileNotFoundError):
    """A data set's files are not where they were looked for; the message says how to get them."""
