"""Video files of generated samples: one ``.npy`` per clip (lossless, what FVD reads), and for looking at them
an animated GIF, an MP4 (when PyAV with an H.264 or MPEG-4 encoder is installed) and a frame-grid PNG.

Clips are uint8 tensors (3, T, H, W), the data sets' convention.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ablations.generate import save_grid
from mambabench.errors import UserError
from mambabench.files import atomic_path


def save_clip(clip: Tensor, path: Path) -> None:
    """uint8 (3, T, H, W) as ``.npy`` (written whole or not at all)."""
    with atomic_path(path) as partial, open(partial, "wb") as f:  # a file: np.save adds no .npy to its name
        np.save(f, clip.numpy())


def load_clip_folder(folder: str | Path, limit: int | None = None) -> Tensor:
    """uint8 (N, 3, T, H, W) of the ``.npy`` clips in ``folder`` (sorted by name)."""
    files = sorted(p for p in Path(folder).glob("*.npy") if not p.name.endswith(".part.npy"))[:limit]
    if not files:
        raise UserError(f"no .npy clips in {folder}; sample a video run with `ablations sample` first")
    clips = [np.load(p) for p in files]
    shapes = {c.shape for c in clips}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4 or clips[0].dtype != np.uint8:
        raise UserError(f"{folder}: clips must all be uint8 arrays (3, T, H, W) of one shape, found {sorted(shapes)}")
    return torch.from_numpy(np.stack(clips))


def tile(clips: Tensor, columns: int | None = None) -> Tensor:
    """(N, 3, T, H, W) -> (T, 3, rows * (H + 2), columns * (W + 2)): every clip in its cell, frame by frame."""
    n, c, t, h, w = clips.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.zeros(t, c, rows * (h + 2), columns * (w + 2), dtype=torch.uint8)
    for i, clip in enumerate(clips):
        r, col = divmod(i, columns)
        canvas[:, :, r * (h + 2) + 1 : r * (h + 2) + 1 + h, col * (w + 2) + 1 : col * (w + 2) + 1 + w] = clip.transpose(
            0, 1
        )
    return canvas


def _upscale(frames: Tensor, min_side: int = 128) -> Tensor:
    """Nearest-neighbour enlargement so that tiny clips (8-16 px) are visible; (T, 3, H, W)."""
    factor = max(1, math.ceil(min_side / min(frames.shape[-2:])))
    return frames.repeat_interleave(factor, -2).repeat_interleave(factor, -1) if factor > 1 else frames


def save_gif(clips: Tensor, path: Path, fps: int = 8) -> Path:
    """The clips tiled into one looping animated GIF."""
    frames = _upscale(tile(clips))
    images = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def mp4_encoder() -> str | None:
    """The first H.264 / MPEG-4 encoder PyAV offers here, or None (no PyAV, or an FFmpeg without one)."""
    try:
        import av
    except ImportError:
        return None
    for name in ("libx264", "h264", "mpeg4"):
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except (ValueError, av.FFmpegError):
                continue
    return None


def save_mp4(clips: Tensor, path: Path, fps: int = 8) -> Path | None:
    """The clips tiled into one MP4 with PyAV; None (nothing written) when no encoder is available."""
    codec = mp4_encoder()
    if codec is None:
        return None
    import av

    frames = _upscale(tile(clips))
    frames = frames[..., : frames.shape[-2] // 2 * 2, : frames.shape[-1] // 2 * 2]  # yuv420p: even sizes
    with atomic_path(path) as partial, av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[-1], frames.shape[-2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def save_frame_grid(clips: Tensor, path: Path) -> Path:
    """One PNG: a row per clip, a column per frame."""
    n, c, t, h, w = clips.shape
    save_grid(clips.transpose(1, 2).reshape(n * t, c, h, w), path, columns=t)
    return path


def save_previews(clips: Tensor, folder: Path, count: int = 16) -> list[Path]:
    """``samples.gif``, ``samples.mp4`` (if an encoder is available) and ``grid.png`` of the first clips."""
    shown = clips[:count]
    written = [save_gif(shown, folder / "samples.gif"), save_frame_grid(shown[:8], folder / "grid.png")]
    mp4 = save_mp4(shown, folder / "samples.mp4")
    return written + ([mp4] if mp4 is not None else [])
