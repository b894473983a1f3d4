"""Shared fixtures: the real MOT15 evaluation data (read in place, skipped when absent) and small builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixdvae.mot import Sequence

REPO = Path(__file__).resolve().parent.parent
MOT15_ROOT = REPO.parent / "shared" / "data" / "MOT15" / "train"
MOT15_SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte", "ETH-Sunnyday", "KITTI-17")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny tensors gain nothing from more, and lose a lot on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mot15_root() -> Path:
    if not all((MOT15_ROOT / name / "seqinfo.ini").is_file() for name in MOT15_SEQUENCES):
        pytest.skip(f"real MOT15 data not found at {MOT15_ROOT} (it lives in ../shared/data beside the repo)")
    return MOT15_ROOT


def make_sequence(tracks: dict[int, list[tuple]], length: int, detections: list[tuple] | None = None,
                  name: str = "TEST-01", size=(640, 480), frame_rate: float = 25.0) -> Sequence:
    """A Sequence from ground-truth tracks ``{id: [(frame, x, y, w, h), ...]}``; detections default to the
    gt boxes with score 0.95, or are given as ``(frame, x, y, w, h, score)`` tuples."""
    gt = np.array([[f, tid, x, y, w, h, 1, 1, 1, -1] for tid, rows in tracks.items() for f, x, y, w, h in rows],
                  dtype=float).reshape(-1, 10)
    if detections is None:
        detections = [(r[0], r[2], r[3], r[4], r[5], 0.95) for r in gt]
    det = np.array([[f, -1, x, y, w, h, s, -1, -1, -1] for f, x, y, w, h, s in detections], dtype=float)
    return Sequence(name, frame_rate, size[0], size[1], length, det.reshape(-1, 10), gt)


def write_bad_audio(folder: Path, rate: int = 16000) -> dict[str, int]:
    """Write the bad inputs every audio tool must refuse into ``folder`` (and ``corrupt.pt``, a broken prior);
    returns ``{file name: expected exit code}``, ``missing.wav`` (never written) included."""
    import soundfile

    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(b"not a wave file at all" * 10)
    soundfile.write(folder / "stereo.wav", np.zeros((4000, 2), np.float32) + 0.1, rate)
    soundfile.write(folder / "silent.wav", np.zeros(4000, np.float32), rate)
    soundfile.write(folder / "short.wav", np.full(500, 0.1, np.float32), rate)
    nan = np.full(4000, 0.1, np.float32)
    nan[100] = np.nan
    soundfile.write(folder / "nan.wav", nan, rate, subtype="FLOAT")
    (folder / "corrupt.pt").write_bytes(b"\x80\x04garbage")
    return {"empty.wav": 4, "garbage.wav": 4, "stereo.wav": 4, "silent.wav": 4, "short.wav": 4, "nan.wav": 4,
            "missing.wav": 3}


def walk(track_id_start: tuple[float, float], velocity: tuple[float, float], frames, size=(40, 100)):
    """Boxes (frame, x, y, w, h) of a target moving at constant velocity (pixels per frame)."""
    (x0, y0), (vx, vy) = track_id_start, velocity
    return [(f, x0 + vx * (f - 1), y0 + vy * (f - 1), size[0], size[1]) for f in frames]
