"""MOTChallenge files and sequences (MOT15, MOT16/17, MOT20 conventions).

Every MOTChallenge text file is comma-separated, one box per line, 1-based frames, boxes ``x, y, w, h``
in pixels (top-left corner, width, height)::

    det.txt      frame, -1, x, y, w, h, score, -1, -1, -1      (MOT15-17; x, y, z world coords unused)
    gt.txt       frame, id, x, y, w, h, flag, class, visibility (MOT16/17/20; MOT15 has flag, -1, -1, -1)
    results      frame, id, x, y, w, h, 1, -1, -1, -1

Readers keep all columns (padded with -1 up to 10) so that classes, visibility and distractor flags reach
the scorer untouched. A malformed line raises :class:`MOTFormatError` naming the file and the line.
"""

from __future__ import annotations

import configparser
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixdvae.errors import DataNotFoundError, InputError

NUM_COLUMNS = 10
MIN_COLUMNS = {"det": 7, "gt": 7, "results": 6}
MOT17_DETECTORS = ("DPM", "FRCNN", "SDP")


class MOTFormatError(InputError):
    """A MOTChallenge file that cannot be read; the message names the file and line."""


class SequenceNotFoundError(DataNotFoundError):
    """The requested sequence folder does not exist; the message says where data should go."""


def read_mot_file(path: str | os.PathLike, kind: str = "det", seq_length: int | None = None) -> np.ndarray:
    """Read a det/gt/results file into an (R, 10) float array, rows in file order.

    Args:
        path: the text file.
        kind: ``"det"``, ``"gt"`` or ``"results"``; sets the minimum column count.
        seq_length: when given, frames must lie in ``1..seq_length``.

    Raises:
        MOTFormatError: wrong column count, a non-numeric or NaN/infinite field, a non-integer frame,
            a frame outside the sequence, or a box with non-positive width or height.
    """
    if kind not in MIN_COLUMNS:
        raise ValueError(f"kind must be one of {sorted(MIN_COLUMNS)}, got {kind!r}")
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if text:
                rows.append(_parse_line(text, path, line_no, kind, seq_length))
    return np.array(rows, dtype=float).reshape(-1, NUM_COLUMNS)


def _parse_line(text: str, path: Path, line_no: int, kind: str, seq_length: int | None) -> list[float]:
    where = f"{path}:{line_no}"
    fields = [f.strip() for f in text.split(",")]
    if not MIN_COLUMNS[kind] <= len(fields) <= NUM_COLUMNS:
        raise MOTFormatError(
            f"{where}: expected {MIN_COLUMNS[kind]} to {NUM_COLUMNS} comma-separated columns, got {len(fields)}"
        )
    values = []
    for column, item in enumerate(fields, start=1):
        try:
            value = float(item)
        except ValueError:
            raise MOTFormatError(f"{where}: column {column} is not a number: {item!r}") from None
        if not math.isfinite(value):
            raise MOTFormatError(f"{where}: column {column} is {item!r}; NaN and infinity are not allowed")
        values.append(value)
    frame = values[0]
    if frame != int(frame) or frame < 1:
        raise MOTFormatError(f"{where}: frame must be a positive integer, got {fields[0]!r}")
    if seq_length is not None and frame > seq_length:
        raise MOTFormatError(f"{where}: frame {int(frame)} is outside 1..{seq_length} (seqLength in seqinfo.ini)")
    if values[4] <= 0 or values[5] <= 0:
        raise MOTFormatError(f"{where}: box width and height must be positive, got w={fields[4]}, h={fields[5]}")
    return values + [-1.0] * (NUM_COLUMNS - len(values))


def format_results(results: np.ndarray) -> str:
    """MOTChallenge result text for an (R, >=6) array of ``frame, id, x, y, w, h``, sorted by frame, id."""
    results = np.asarray(results, dtype=float)
    if results.size == 0:
        return ""
    if not np.isfinite(results[:, :6]).all():
        raise ValueError("results contain NaN or infinite values")
    order = np.lexsort((results[:, 1], results[:, 0]))
    return "".join(
        f"{int(f)},{int(i)},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n" for f, i, x, y, w, h in results[order, :6]
    )


def atomic_write(path: str | os.PathLike, write, binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file in the folder of ``path``, then rename it to ``path``.

    A reader never sees a half-written file, and a failure leaves any previous file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_results(path: str | os.PathLike, results: np.ndarray) -> None:
    """Write tracker output (R, >=6: ``frame, id, x, y, w, h``) as a MOTChallenge result file, atomically."""
    atomic_write_text(path, format_results(results))


@dataclass
class SeqInfo:
    """The ``[Sequence]`` section of ``seqinfo.ini``. Sizes in pixels, frame rate in frames per second."""

    name: str
    frame_rate: float
    seq_length: int
    im_width: int
    im_height: int
    im_dir: str = "img1"
    im_ext: str = ".jpg"

    def to_ini(self) -> str:
        return (
            f"[Sequence]\nname={self.name}\nimDir={self.im_dir}\nframeRate={self.frame_rate:g}\n"
            f"seqLength={self.seq_length}\nimWidth={self.im_width}\nimHeight={self.im_height}\nimExt={self.im_ext}\n"
        )


def read_seqinfo(path: str | os.PathLike) -> SeqInfo:
    """Parse ``seqinfo.ini``; raises :class:`MOTFormatError` naming the file and the missing or bad key."""
    path = Path(path)
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except configparser.Error as err:
        raise MOTFormatError(f"{path}: not a valid ini file: {err}") from None
    if "Sequence" not in parser:
        raise MOTFormatError(f"{path}: missing [Sequence] section")
    section = parser["Sequence"]

    def number(key: str, cast):
        if key not in section:
            raise MOTFormatError(f"{path}: missing key {key!r} in [Sequence]")
        try:
            value = cast(section[key])
        except ValueError:
            raise MOTFormatError(f"{path}: {key}={section[key]!r} is not a valid number") from None
        if not value > 0:
            raise MOTFormatError(f"{path}: {key} must be positive, got {section[key]!r}")
        return value

    return SeqInfo(
        name=section.get("name", path.parent.name),
        frame_rate=number("frameRate", float),
        seq_length=number("seqLength", int),
        im_width=number("imWidth", int),
        im_height=number("imHeight", int),
        im_dir=section.get("imDir", "img1"),
        im_ext=section.get("imExt", ".jpg"),
    )


@dataclass
class Sequence:
    """One MOTChallenge sequence in memory.

    Attributes:
        name: folder name, e.g. ``MOT17-02-FRCNN``.
        path: the sequence folder (None for sequences built in memory).
        frame_rate: frames per second.
        im_width, im_height: image size in pixels.
        length: number of frames; frames are numbered ``1..length``.
        detections: (R, 10) array, all columns of ``det.txt``.
        gt: (G, 10) array of ``gt.txt``, or None when the sequence has no ground truth.
    """

    name: str
    frame_rate: float
    im_width: int
    im_height: int
    length: int
    detections: np.ndarray
    gt: np.ndarray | None = None
    path: Path | None = None
    _frames: list[np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, folder: str | os.PathLike, det_file: str | os.PathLike | None = None) -> Sequence:
        """Load ``folder/seqinfo.ini``, ``det/det.txt`` (or ``det_file``) and, if present, ``gt/gt.txt``."""
        folder = Path(folder)
        info_path = folder / "seqinfo.ini"
        if not info_path.is_file():
            problem = f"{info_path} not found: every MOTChallenge sequence folder needs seqinfo.ini"
            raise InputError(problem) if folder.is_dir() else SequenceNotFoundError(problem)
        info = read_seqinfo(info_path)
        det_path = Path(det_file) if det_file else folder / "det" / "det.txt"
        if not det_path.is_file():
            raise SequenceNotFoundError(f"{det_path} not found: the sequence has no public detections")
        gt_path = folder / "gt" / "gt.txt"
        return cls(
            name=folder.name,
            frame_rate=info.frame_rate,
            im_width=info.im_width,
            im_height=info.im_height,
            length=info.seq_length,
            detections=read_mot_file(det_path, "det", info.seq_length),
            gt=read_mot_file(gt_path, "gt", info.seq_length) if gt_path.is_file() else None,
            path=folder,
        )

    @property
    def seqinfo(self) -> SeqInfo:
        return SeqInfo(self.name, self.frame_rate, self.length, self.im_width, self.im_height)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.im_width, self.im_height

    def frame_detections(self, frame: int) -> np.ndarray:
        """Detections of 1-based ``frame`` as an (M, 5) array ``x, y, w, h, score``."""
        if self._frames is None:
            self._frames = split_by_frame(self.detections[:, [0, 2, 3, 4, 5, 6]], self.length)
        return self._frames[frame - 1]

    def save(self, folder: str | os.PathLike) -> None:
        """Write the sequence in MOTChallenge layout (seqinfo.ini, det/det.txt, gt/gt.txt when present)."""
        folder = Path(folder)
        atomic_write_text(folder / "seqinfo.ini", self.seqinfo.to_ini())
        atomic_write_text(folder / "det" / "det.txt", format_rows(self.detections))
        if self.gt is not None:
            atomic_write_text(folder / "gt" / "gt.txt", format_rows(self.gt))


SCORED_CLASSES = (1,)  # MOT16/17/20 class TrackEval scores: pedestrian
PERSON_CLASSES = (1, 2, 7)  # people who move like pedestrians: pedestrian, person on vehicle, static person


def has_class_column(gt: np.ndarray) -> bool:
    """Whether column 8 of ground-truth rows (G, >=9) holds MOT16/17/20 classes (integers 1..12, with a visibility
    in [0, 1] beside them) rather than MOT15's world coordinates or -1."""
    if len(gt) == 0 or gt.shape[1] < 9:
        return False
    cls, vis = gt[:, 7], gt[:, 8]
    return bool(np.all((cls == np.round(cls)) & (cls >= 1) & (cls <= 12)) and np.all((vis >= 0) & (vis <= 1)))


def pedestrian_rows(gt: np.ndarray, classes: tuple[int, ...] | None = SCORED_CLASSES,
                    scored_only: bool = True) -> np.ndarray:
    """The ground-truth rows (G, 10) that are pedestrians: the one definition used by scoring helpers, plots and
    the motion prior's training data.

    Args:
        gt: ground-truth rows ``frame, id, x, y, w, h, flag, class, visibility, ...``.
        classes: classes kept where the file has a class column (MOT16/17/20); files without one (MOT15, whose
            columns 8-10 are world coordinates or -1) keep every row. None keeps every class.
        scored_only: drop the zero-flagged rows (boxes the benchmark ignores).
    """
    keep = gt[:, 6] != 0 if scored_only else np.ones(len(gt), dtype=bool)
    if classes is not None and has_class_column(gt):
        keep &= np.isin(gt[:, 7], classes)
    return gt[keep]


def split_by_frame(rows: np.ndarray, length: int) -> list[np.ndarray]:
    """Split (R, 1 + C) rows whose first column is the 1-based frame into ``length`` arrays of (M_t, C)."""
    frames = rows[:, 0].astype(int)
    order = np.argsort(frames, kind="stable")
    bounds = np.searchsorted(frames[order], np.arange(1, length + 2))
    sorted_rows = rows[order, 1:]
    return [sorted_rows[bounds[t] : bounds[t + 1]] for t in range(length)]


def format_rows(rows: np.ndarray) -> str:
    """Text of (R, 10) det/gt rows: frame and id as integers, the rest with up to 6 significant digits."""
    return "".join(f"{int(r[0])},{int(r[1])}," + ",".join(f"{v:.6g}" for v in r[2:]) + "\n" for r in rows)


def missing_data_message(data_root: Path, name: str) -> str:
    return (
        f"sequence {name!r} not found in {data_root}.\n"
        "MOT17/MOT20 are not bundled: download them from https://motchallenge.net and unpack so that e.g.\n"
        "  data/MOT17/train/MOT17-02-FRCNN/{seqinfo.ini,det/det.txt,gt/gt.txt}\n"
        "exists, then pass --data-root data/MOT17/train --seq MOT17-02. Or run the bundled synthetic benchmark:\n"
        "  python tools/make_synthetic.py --out data/synthetic\n"
        "  python tools/track.py --data-root data/synthetic/train --seq SYNTH-01 --eval"
    )


def find_sequence(data_root: str | os.PathLike, name: str, detector: str = "FRCNN") -> Path:
    """Resolve a sequence folder inside ``data_root`` (a folder of sequence folders).

    ``name`` is a folder name; a MOT17 name without detector suffix (``MOT17-02``) resolves to
    ``MOT17-02-<detector>``. Raises :class:`SequenceNotFoundError` with instructions when absent.
    """
    data_root = Path(data_root)
    candidates = [data_root / name]
    if name.startswith("MOT17-") and name.count("-") == 1:
        candidates.insert(0, data_root / f"{name}-{detector}")
    for folder in candidates:
        if (folder / "seqinfo.ini").is_file():
            return folder
    for folder in candidates:
        if folder.is_dir():
            raise InputError(f"{folder / 'seqinfo.ini'} not found: the sequence folder {folder} exists, but every "
                             "MOTChallenge sequence folder needs a seqinfo.ini ([Sequence] with frameRate, seqLength, "
                             "imWidth, imHeight)")
    raise SequenceNotFoundError(missing_data_message(data_root, name))


def list_sequences(data_root: str | os.PathLike) -> list[str]:
    """Names of the sequence folders (those holding ``seqinfo.ini``) in ``data_root``, sorted."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        return []
    return sorted(p.name for p in data_root.iterdir() if (p / "seqinfo.ini").is_file())
