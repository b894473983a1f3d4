#!/usr/bin/env python
"""Build a speaker-disjoint speech corpus (train / val / test) for the spectrogram priors.

    python tools/make_speech_corpus.py /usr/share/asterisk/sounds --test-speakers fr_CA_f_June --out data/speech
    python tools/make_speech_corpus.py ~/corpora/VCTK/wav48 --n-test-speakers 10 --out data/vctk
    python tools/make_speech_corpus.py ~/corpora/LibriSpeech/train-clean-100 --speaker-depth 1 --out data/libri

SOURCE holds one folder per speaker (``--speaker-depth`` levels down; deeper folders belong to their speaker)
with .wav, .flac, .ogg or .g722 files (the Debian asterisk-core-sounds-{en,es,fr,it}-g722 packages install
under /usr/share/asterisk/sounds; .g722 needs ``pip install "mixdvae[speech]"``). Every file is read at
16 kHz mono, its leading and trailing silence trimmed; the test speakers keep all their utterances out of
training, and a seeded fraction of every other speaker's utterances is the validation split. Writes
OUT/{train,val,test}.npz and OUT/corpus.json (see mixdvae/audio/corpus.py) and prints the minutes per split
and speaker.
"""

from __future__ import annotations

import sys

from mixdvae.audio.corpus import CorpusSettings, build_corpus, format_summary
from mixdvae.cli import guarded, parser


@guarded
def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("source", help="folder of speaker folders")
    ap.add_argument("--out", required=True, help="corpus folder to write (e.g. data/speech)")
    ap.add_argument("--speaker-depth", type=int, default=1, help="folder level that names the speaker (default 1)")
    ap.add_argument("--test-speakers", nargs="+", metavar="NAME", help="held-out speaker folder(s)")
    ap.add_argument("--n-test-speakers", type=int, default=1,
                    help="without --test-speakers: how many to draw with the seed (default 1)")
    ap.add_argument("--val-fraction", type=float, default=0.05,
                    help="fraction of each training speaker's utterances for validation (default 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold-db", type=float, default=40.0,
                    help="trim frames this far below the loudest frame at both ends (default 40)")
    ap.add_argument("--margin", type=float, default=0.1, help="seconds kept around the trimmed speech (default 0.1)")
    ap.add_argument("--skip", nargs="*", default=["silence"], help="folder names not visited (default: silence)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)
    if not 0 <= args.val_fraction < 1:
        ap.error("--val-fraction must be in [0, 1)")
    settings = CorpusSettings(
        speaker_depth=args.speaker_depth, test_speakers=args.test_speakers, n_test_speakers=args.n_test_speakers,
        val_fraction=args.val_fraction, seed=args.seed, threshold_db=args.threshold_db, margin=args.margin,
        skip=tuple(args.skip),
    )
    summary = build_corpus(args.source, args.out, settings, progress=not args.no_progress)
    print(format_summary(summary))
    print(f"wrote {args.out}/{{train,val,test}}.npz and corpus.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
