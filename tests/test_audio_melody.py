"""Random melodies for training source priors on more timbres: the melody recipe, the MIDI file (read back by an
independent parser written here), and the fluidsynth render (skipped without fluidsynth and a GM soundfont)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mixdvae.audio.melody import MAJOR_SCALE, TICKS_PER_BEAT, _variable_length, midi_bytes, random_melody, render
from mixdvae.errors import DataNotFoundError
from tests.tools_loader import load_tool

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
CAN_RENDER = shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def read_midi(data: bytes) -> tuple[int, float, list[tuple[float, int, int, bool]]]:
    """(program, tempo bpm, [(seconds, pitch, velocity, on)]) of a one-track file: a reader for the tests only."""
    assert data[:4] == b"MThd" and int.from_bytes(data[4:8], "big") == 6
    division = int.from_bytes(data[12:14], "big")
    assert data[14:18] == b"MTrk"
    end = 22 + int.from_bytes(data[18:22], "big")
    assert end == len(data)
    pos, tick, tempo, program, events = 22, 0, 120.0, None, []
    while pos < end:
        delta = 0
        while True:
            byte = data[pos]
            pos += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        tick += delta
        status = data[pos]
        if status == 0xFF:
            kind, length = data[pos + 1], data[pos + 2]
            if kind == 0x51:
                tempo = 60_000_000 / int.from_bytes(data[pos + 3 : pos + 6], "big")
            pos += 3 + length
        elif status & 0xF0 == 0xC0:
            program = data[pos + 1]
            pos += 2
        else:
            assert status & 0xF0 in (0x80, 0x90)
            events.append((tick, data[pos + 1], data[pos + 2], status & 0xF0 == 0x90))
            pos += 3
    seconds_per_tick = 60.0 / tempo / division
    return program, tempo, [(t * seconds_per_tick, p, v, on) for t, p, v, on in events]


def test_variable_length_quantities_match_the_midi_specification():
    for value, expected in [(0, "00"), (0x40, "40"), (0x7F, "7f"), (0x80, "8100"), (0x2000, "c000"),
                            (0x3FFF, "ff7f"), (0x200000, "81808000"), (0x0FFFFFFF, "ffffff7f")]:
        assert _variable_length(value).hex() == expected


def test_random_melody_follows_the_recipe_and_is_seeded():
    notes, tempo = random_melody(np.random.default_rng(3), seconds=20.0)
    again, _ = random_melody(np.random.default_rng(3), seconds=20.0)
    other, _ = random_melody(np.random.default_rng(4), seconds=20.0)
    assert notes == again and notes != other
    assert 70 <= tempo <= 130
    played = [n for n in notes if n.pitch is not None]
    assert len(played) > 10
    assert all(60 <= n.pitch <= 93 and 60 <= n.velocity <= 120 for n in played)
    assert all(0.2 - 1e-9 <= n.duration <= 1.2 + 1e-9 for n in notes)
    assert notes[-1].start + notes[-1].duration >= 20.0 > notes[-1].start
    assert all(b.start == pytest.approx(a.start + a.duration) for a, b in zip(notes, notes[1:]))
    tonics = [t for t in range(12) if all((n.pitch - t) % 12 in MAJOR_SCALE for n in played)]
    assert tonics  # every note in one major key
    steps = [abs(b.pitch - a.pitch) for a, b in zip(played, played[1:])]
    assert max(steps) <= 7  # at most four scale steps: a fifth


def test_midi_file_reads_back_as_the_melody():
    notes, tempo = random_melody(np.random.default_rng(7), seconds=10.0)
    program, read_tempo, events = read_midi(midi_bytes(notes, tempo, program=73))
    assert program == 73 and read_tempo == pytest.approx(tempo, rel=1e-5)
    ons = [(t, p, v) for t, p, v, on in events if on]
    offs = [(t, p) for t, p, _, on in events if not on]
    played = [n for n in notes if n.pitch is not None]
    assert [(p, v) for _, p, v in ons] == [(n.pitch, n.velocity) for n in played]
    tick = 60.0 / tempo / TICKS_PER_BEAT
    for (t, _, _), note in zip(ons, played):
        assert t == pytest.approx(note.start, abs=tick)
    assert sorted(p for _, p in offs) == sorted(n.pitch for n in played)
    assert sum(1 for _, _, _, on in events if on) == len(played)
    with pytest.raises(ValueError, match="0..127"):
        midi_bytes(notes, tempo, program=128)


def test_render_of_a_missing_soundfont_is_refused(tmp_path):
    notes, tempo = random_melody(np.random.default_rng(0), seconds=2.0)
    with pytest.raises(DataNotFoundError):
        render(midi_bytes(notes, tempo, 73), tmp_path / "missing.sf2", 2.0)
    code = load_tool("render_melodies").main([str(tmp_path / "missing.sf2"), "--prefix", "x", "--out",
                                              str(tmp_path / "out"), "--count", "1", "--no-progress"])
    assert code == 3
    assert not list(tmp_path.rglob("*.flac"))


@pytest.mark.skipif(not CAN_RENDER, reason="needs fluidsynth and timgm6mb-soundfont (apt-get install)")
def test_render_plays_the_note_at_its_pitch_and_the_tool_writes_flac(tmp_path):
    from mixdvae.audio import read_audio
    from mixdvae.audio.melody import Note

    samples = render(midi_bytes([Note(69, 0.0, 1.0, 100)], 120.0, 73), SOUNDFONT, 1.5)  # A4, 440 Hz
    assert samples.dtype == np.float32 and len(samples) == 24000
    window = samples[2000:18000]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    assert abs(np.argmax(spectrum) * 16000 / len(window) - 440.0) < 10.0
    assert np.abs(samples[20000:]).max() < 0.1 * np.abs(samples[:16000]).max()  # the note has ended
    code = load_tool("render_melodies").main([str(SOUNDFONT), "--prefix", "tim", "--out", str(tmp_path),
                                              "--count", "2", "--seconds", "3", "--no-progress"])
    assert code == 0
    first = read_audio(tmp_path / "tim_00.flac").samples
    assert len(first) == 48000
    assert 10 * np.log10(np.mean(first.astype(np.float64) ** 2)) == pytest.approx(-26.0, abs=0.1)
    assert not np.array_equal(first, read_audio(tmp_path / "tim_01.flac").samples)
