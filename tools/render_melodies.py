#!/usr/bin/env python
"""Render random melodies on a SoundFont: training material for a source prior that should hear more timbres.

    apt-get install -y fluidsynth timgm6mb-soundfont csound-soundfont
    python tools/render_melodies.py /usr/share/sounds/sf2/TimGM6mb.sf2 --prefix timgm6mb --out data/flute_extra
    python tools/render_melodies.py /usr/share/sounds/sf2/sf_GMbank.sf2 --prefix csound --out data/flute_extra

Each file is a random diatonic melody (the recipe of ../shared/data/audio/flute: tempo 70-130 bpm, notes of 0.2-1.2
s, velocities 60-120, some rests; mixdvae/audio/melody.py) on General MIDI ``--program`` (0-based; 73 is the flute),
rendered by the fluidsynth command line at 16 kHz with reverb and chorus off, mixed to mono, scaled to
``--level-db`` RMS and written as OUT/PREFIX_NN.flac (16-bit; each file written atomically). The same seed gives
the same melodies on every soundfont. Use the files in a prior's training config (``data: audio: folder:`` takes
a list of folders; configs/prior_flute_srnn.yaml). Never render the soundfont a benchmark tests on (FluidR3 GM
and MuseScore General Lite hold the shared flute files).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from mixdvae.audio.melody import render_melodies
from mixdvae.cli import guarded, parser


@guarded
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("soundfont", help="a .sf2 or .sf3 SoundFont file")
    ap.add_argument("--out", required=True, help="folder to write the .flac files to (created if missing)")
    ap.add_argument("--prefix", required=True, help="file name prefix, e.g. the soundfont's name")
    ap.add_argument("--count", type=int, default=17, help="number of melodies (default 17: e.g. 15 train, 2 val)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each melody (default 20 s)")
    ap.add_argument("--program", type=int, default=73, help="General MIDI program, 0-based (default 73: flute)")
    ap.add_argument("--level-db", type=float, default=-26.0, help="RMS level of each file, dB re full scale (-26)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the melodies (default 0)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)
    if args.count < 1 or args.seconds <= 0:
        ap.error("--count must be at least 1 and --seconds positive")
    if not 0 <= args.program <= 127:
        ap.error("--program must be in 0..127")
    with tqdm(total=args.count, desc="melodies", disable=args.no_progress, file=sys.stderr) as bar:
        paths = render_melodies(args.soundfont, args.out, args.prefix, args.count, args.seconds, args.program,
                                args.seed, args.level_db, progress=bar.update)
    print(f"wrote {len(paths)} files: {paths[0]} .. {paths[-1].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
