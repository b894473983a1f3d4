import numpy as np
import pytest

from mixdvae.mot import (
    MOTFormatError,
    SeqInfo,
    Sequence,
    SequenceNotFoundError,
    find_sequence,
    read_mot_file,
    read_seqinfo,
    write_results,
)
from tests.conftest import make_sequence, walk


def test_sequence_round_trip(tmp_path):
    seq = make_sequence({1: walk((10, 20), (2, 0), range(1, 11)), 2: walk((300, 50), (-1, 1), range(3, 9))}, 10)
    seq.save(tmp_path / "TEST-01")
    loaded = Sequence.load(tmp_path / "TEST-01")
    assert (loaded.name, loaded.length, loaded.frame_rate, loaded.image_size) == ("TEST-01", 10, 25.0, (640, 480))
    np.testing.assert_allclose(loaded.detections, seq.detections, rtol=1e-5)
    np.testing.assert_allclose(loaded.gt, seq.gt, rtol=1e-5)
    assert loaded.frame_detections(3).shape == (2, 5)
    assert loaded.frame_detections(10).shape == (1, 5)


def test_results_round_trip_sorted_and_atomic(tmp_path):
    results = np.array([[2, 7, 1.5, 2.25, 30, 60], [1, 9, 0, 0, 10, 20], [1, 3, 5, 5, 10, 20]])
    path = tmp_path / "out" / "seq.txt"
    write_results(path, results)
    back = read_mot_file(path, "results")
    np.testing.assert_allclose(back[:, :6], results[[2, 1, 0]])
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_write_results_refuses_nan_and_keeps_old_file(tmp_path):
    path = tmp_path / "seq.txt"
    write_results(path, np.array([[1, 1, 0, 0, 10, 10]]))
    with pytest.raises(ValueError, match="NaN"):
        write_results(path, np.array([[1, 1, np.nan, 0, 10, 10]]))
    assert path.read_text().startswith("1,1,0.00")
    assert list(tmp_path.iterdir()) == [path]


def test_mot17_columns_kept(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,20,30,40,1,1,0.75\n2,1,11,20,30,40,0,7,0.5\n")
    rows = read_mot_file(path, "gt")
    assert rows.shape == (2, 10)
    np.testing.assert_allclose(rows[:, 6:9], [[1, 1, 0.75], [0, 7, 0.5]])
    assert (rows[:, 9] == -1).all()


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,-1,10,20,30", "columns"),
        ("1,-1,10,20,30,40,0.9,-1,-1,-1,5", "columns"),
        ("1,-1,10,abc,30,40,0.9,-1,-1,-1", "column 4 is not a number"),
        ("1,-1,10,20,0,40,0.9,-1,-1,-1", "width and height must be positive"),
        ("1,-1,10,20,30,-4,0.9,-1,-1,-1", "width and height must be positive"),
        ("1,-1,10,nan,30,40,0.9,-1,-1,-1", "NaN"),
        ("0,-1,10,20,30,40,0.9,-1,-1,-1", "positive integer"),
        ("1.5,-1,10,20,30,40,0.9,-1,-1,-1", "positive integer"),
        ("11,-1,10,20,30,40,0.9,-1,-1,-1", "outside 1..10"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,40,0.9,-1,-1,-1\n\n" + line + "\n")
    with pytest.raises(MOTFormatError, match=message) as err:
        read_mot_file(path, "det", seq_length=10)
    assert f"{path}:3:" in str(err.value)


def test_seqinfo_errors(tmp_path):
    path = tmp_path / "seqinfo.ini"
    path.write_text("[Sequence]\nname=X\nframeRate=25\nseqLength=10\nimWidth=640\n")
    with pytest.raises(MOTFormatError, match="imHeight"):
        read_seqinfo(path)
    path.write_text("[Sequence]\nname=X\nframeRate=fast\nseqLength=10\nimWidth=640\nimHeight=480\n")
    with pytest.raises(MOTFormatError, match="frameRate"):
        read_seqinfo(path)
    info = SeqInfo("X", 14, 10, 640, 480)
    path.write_text(info.to_ini())
    assert read_seqinfo(path) == info


def test_find_sequence_mot17_detector_suffix_and_missing(tmp_path):
    make_sequence({1: walk((10, 20), (1, 0), range(1, 4))}, 3, name="MOT17-02-SDP").save(tmp_path / "MOT17-02-SDP")
    assert find_sequence(tmp_path, "MOT17-02", detector="SDP").name == "MOT17-02-SDP"
    with pytest.raises(SequenceNotFoundError, match="make_synthetic"):
        find_sequence(tmp_path, "MOT17-02", detector="FRCNN")


def test_mot15_sequences_load(mot15_root):
    seq = Sequence.load(mot15_root / "KITTI-17")
    assert (seq.length, seq.image_size, seq.frame_rate) == (145, (1224, 370), 10.0)
    assert seq.detections.shape == (592, 10) and seq.gt.shape == (782, 10)
    assert sum(len(seq.frame_detections(f)) for f in range(1, seq.length + 1)) == 592
