#!/usr/bin/env python
"""Benchmark of speech + flute separation: mixture, supervised NMF, MixDVAE variants and the oracle masks.

A seeded test set: ``--pairs`` pairs of a speech excerpt and a flute excerpt of ``--seconds`` s, each mixed at
every speech-to-flute ratio of ``--ratios`` (default -5, 0, 5 dB). Speech comes from the held-out split of the
speech corpus (``test``: June, fr_CA, a speaker the speech prior never heard); flute from the flute files of the
soundfont the flute prior was NOT trained on (read from the prior's training config: a prior trained on
``fluidr3_*`` is tested on ``musescore_*`` and the other way round). ``--split val`` builds the same kind of set
from validation material (the corpus's val split, the flute prior's own validation files), for tuning;
``--flute-folder DIR --flute-files GLOB`` takes the flute from other files, e.g. melodies rendered on soundfonts no
prior heard (``tools/render_melodies.py``: a validation set for unheard timbres).

Table: per method, SI-SDR / SDR / SIR / SAR of each source averaged over the set (dB; BSS Eval v4, no
permutation) and the real-time factor (CPU seconds per second of audio, one torch thread). Beside the oracle
masks, ``MixDVAE bound: exact inference`` (``exact_inference_separate``): the default settings' output with each
source's prior variance its prior's reconstruction of the true source, i.e. what MixDVAE would reach if its
inference were exact; its distance to the oracle ratio mask is the priors' own (timbre, model). Then each MixDVAE
variant's paired SI-SDR differences to supervised NMF and to the oracle ratio mask, with 95 % bootstrap intervals
over the mixtures (an interval that excludes 0 is a difference the set resolves). Supervised NMF: one
IS-NMF basis per source learned on that source's prior's training data (speech: the shipped ``nmf_speech``, rank
128, or with ``--speech-nmf-rank`` one of another rank learned now the same way; flute: learned here on the flute
prior's training files, or those its config names ``nmf_train``, or ``--flute-nmf-files``; rank ``--nmf-rank``);
the same bases give MixDVAE its starting point (``init="nmf"``, the default; variant ``reconstruction``: the
paper's start).

Examples:
    python tools/benchmark_separate.py                                      # srnn_flute (FluidR3) vs MuseScore
    python tools/benchmark_separate.py --flute-prior runs/prior_flute_musescore/srnn.pt
    python tools/benchmark_separate.py --split val --variants default mean per_bin --json val.json
    python tools/benchmark_separate.py --split val --flute-folder data/flute_extra --flute-files 'csound_*.flac'
    python tools/benchmark_separate.py --speech-nmf-rank 64        # a speech basis of another rank, learned first
    python tools/benchmark_separate.py --ship-nmf      # learn data/priors/nmf_flute.pt from srnn_flute's data
    python tools/benchmark_separate.py --ship-nmf speech --nmf-rank 128   # data/priors/nmf_speech.pt, from the corpus
    python tools/benchmark_separate.py --flute-prior srnn_mysource --ship-nmf mysource   # any source class
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mixdvae.audio import read_audio
from mixdvae.audio.corpus import load_split
from mixdvae.audio.enhance import NMFBasis, learn_nmf_basis, learn_speech_basis
from mixdvae.audio.metrics import Interval, mean_interval
from mixdvae.audio.mixing import snr_db
from mixdvae.audio.separate import (
    SCORES,
    SeparateConfig,
    exact_inference_separate,
    load_sources,
    nmf_separate,
    oracle_separate,
    separate,
    separation_scores,
    source_path,
)
from mixdvae.cli import guarded, parser
from mixdvae.config import dataclass_overrides, parse_override
from mixdvae.dvae import PRIORS_DIR, load_prior
from mixdvae.dvae.training import audio_folders, folder_files, resolve_path
from mixdvae.errors import UsageError
from mixdvae.mot import atomic_write_text

RATE = 16000
SOURCES = ("speech", "flute")
# MixDVAE variants: the named options of mixdvae.audio.separate.SeparateConfig (beside the defaults)
VARIANTS = {
    "default": {},
    # the paper's start (every source starts as the mixture) with the settings measured best for it (the defaults
    # before the NMF start)
    "reconstruction": {"init": "reconstruction", "mixture": "per_bin", "rho": 0.03, "iterations": 5, "average": 3,
                       "equalise": 0, "output": "assignment"},
    "research": {"sampling": "gaussian", "mixture": "per_bin", "assignment": "mean_field", "update_rho": False,
                 "rho": 0.03, "iterations": 70, "average": 1, "output": "posterior", "equalise": 0},
    # the per_bin mixture's other E-W and output masks (module docstring of mixdvae.audio.separate)
    "mean_field": {"mixture": "per_bin", "assignment": "mean_field", "average": 1, "output": "posterior"},  # paper's
    "posterior": {"mixture": "per_bin", "output": "posterior"},  # the posterior-mean gain a
    "assignment": {"mixture": "per_bin", "output": "assignment"},  # the assignment eta (the default before "power")
    "per_source": {"mixture": "per_bin", "output": ["posterior", "assignment"]},  # speech: a, flute: eta
    "gaussian": {"sampling": "gaussian"},
    "mean": {"sampling": "mean"},
    "tempered": {"sampling": "tempered"},
    "per_bin": {"mixture": "per_bin"},  # the paper's per-bin assignment (the default before the additive mixture)
    "additive": {"mixture": "additive"},
    "fixed_rho": {"update_rho": False},
    "update_rho": {"update_rho": True},
    "level_log_power": {"level": "log_power"},
}
SOUNDFONTS = ("fluidr3", "musescore")
# the priors' own bound: the default settings with each prior's reconstruction of its true source as its variance
BOUND = "MixDVAE bound: exact inference"


def parse_args(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--speech-prior", default="speech",
                    help="speech prior (name or path; default: the speech class's, rvae_speech)")
    ap.add_argument("--flute-prior", default="srnn_flute", help="flute prior (name or path)")
    ap.add_argument("--split", choices=("test", "val"), default="test", help="test set (default) or validation set")
    ap.add_argument("--corpus", default="data/speech", help="speech corpus of tools/make_speech_corpus.py")
    ap.add_argument("--flute-files", help="glob of the flute files (default: the soundfont the prior never heard; "
                                          "with --split val, the prior's validation files)")
    ap.add_argument("--flute-folder", type=Path, metavar="DIR",
                    help="also look for --flute-files in DIR (e.g. data/flute_extra of tools/render_melodies.py: "
                         "timbres no prior heard)")
    ap.add_argument("--flute-nmf-files", nargs="+", metavar="GLOB",
                    help="training files of the flute NMF basis, in the prior's folders (default: the prior's "
                         "data.audio.nmf_train, else its training files): a prior trained on several soundfonts keeps "
                         "supervised NMF's basis on one, where the rank-64 basis separates better")
    ap.add_argument("--pairs", type=int, default=4, help="speech/flute excerpt pairs (default 4)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each mixture (default 4 s)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[-5.0, 0.0, 5.0], help="speech-to-flute ratios (dB)")
    ap.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS), help="MixDVAE variants")
    ap.add_argument("--iterations", type=int, help="VEM iterations of every variant (default: the config's)")
    ap.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE",
                    help="any other SeparateConfig setting of every variant, e.g. --set rho=0.05 (repeatable)")
    ap.add_argument("--nmf-rank", type=int, default=64,
                    help="rank of the flute NMF basis, or of the --ship-nmf class's (default 64: chosen on the "
                         "validation mixtures among 32, 48, 64, 96 and 128)")
    ap.add_argument("--speech-nmf-rank", type=int, metavar="RANK",
                    help="learn the speech NMF basis of this rank now on the corpus's training split, as the shipped "
                         "nmf_speech (rank 128) was learned, instead of loading nmf_speech")
    ap.add_argument("--seed", type=int, default=0, help="seed of the test set and of the VEM (default 0)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the table and the per-mixture scores")
    ap.add_argument("--ship-nmf", nargs="?", const="flute", metavar="CLASS",
                    help="learn the NMF basis of --flute-prior's training files (MixDVAE's start and the NMF "
                         "baseline) and write it to data/priors/nmf_CLASS.pt (default CLASS: flute), then stop; "
                         "any source class's prior trained from a data: audio: folder works; CLASS speech learns "
                         "from the --corpus training split instead (200 utterances, seed 0)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return ap.parse_args(argv)


def flute_data(prior) -> dict:
    """The ``data: audio:`` section the flute prior was trained with (folder, train and val patterns)."""
    audio = ((prior.meta.get("train_config") or {}).get("data") or {}).get("audio") or {}
    if not audio.get("folder"):
        raise UsageError("the flute prior holds no training folder in its metadata (train it with "
                         "tools/train_prior.py and a data: audio: folder: config)")
    return audio


def other_soundfont(patterns) -> str:
    """The glob of the soundfont the prior's training patterns do not name."""
    text = " ".join([patterns] if isinstance(patterns, str) else patterns)
    unseen = [name for name in SOUNDFONTS if name not in text]
    if len(unseen) != 1:
        raise UsageError(f"cannot tell the unseen soundfont from the training files {patterns!r}: give --flute-files")
    return f"{unseen[0]}_*.flac"


def flute_nmf_patterns(audio: dict, patterns=None):
    """The training files of the flute NMF basis: ``patterns`` (``--flute-nmf-files``), else the ``data: audio:``
    section's ``nmf_train`` if it has one, else its ``train``."""
    return patterns or audio.get("nmf_train") or audio["train"]


def learn_flute_basis(audio: dict, rank: int, seed: int, patterns=None) -> NMFBasis:
    """IS-NMF basis of the flute prior's training files (:func:`flute_nmf_patterns`), in the prior's folders."""
    files = folder_files(audio_folders(audio), flute_nmf_patterns(audio, patterns))
    waves = [read_audio(f).samples for f in files]
    return learn_nmf_basis(waves, rank=rank, seed=seed, meta={"folder": str(audio["folder"]),
                                                              "files": [f.name for f in files]})


def excerpt(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of ``signal`` from a seeded random offset (no wrap-around)."""
    if len(signal) < length:
        raise UsageError(f"a source of {len(signal)} samples is shorter than a mixture ({length})")
    start = int(rng.integers(len(signal) - length + 1))
    return signal[start : start + length]


def flute_files(args, audio: dict) -> list[Path]:
    """The flute files of the set: ``--flute-files``, else the prior's validation files (``--split val``) or the
    soundfont it never heard, in the prior's folders and ``--flute-folder``."""
    if args.flute_files:
        patterns = args.flute_files
    else:
        patterns = audio["val"] if args.split == "val" else other_soundfont(audio["train"])
    folders = audio_folders(audio) + ([resolve_path(str(args.flute_folder))] if args.flute_folder else [])
    return folder_files(folders, patterns)


def build_set(args, audio: dict) -> list[dict]:
    """The seeded mixtures: each ``{"mixture", "references" (2, n), "ratio", "pair", "flute_file"}``."""
    corpus = load_split(resolve_path(args.corpus), args.split)
    speech = np.concatenate([corpus.utterance(i) for i in range(len(corpus))])
    flutes = {f.name: read_audio(f).samples for f in flute_files(args, audio)}
    rng = np.random.default_rng(args.seed)
    length = int(round(args.seconds * RATE))
    out = []
    for pair in range(args.pairs):
        s = excerpt(speech, length, rng)
        name = sorted(flutes)[int(rng.integers(len(flutes)))]
        f = excerpt(flutes[name], length, rng)
        for ratio in args.ratios:
            scaled = f * 10 ** ((snr_db(s, f) - ratio) / 20)
            refs = np.stack([s, scaled]).astype(np.float32)
            out.append({"mixture": refs.sum(0), "references": refs, "ratio": ratio, "pair": pair,
                        "flute_file": name})
    return out


def evaluate(name: str, estimates: list[np.ndarray], items: list[dict], cpu_seconds: float | None) -> dict:
    """Mean scores per source over the set, per-ratio SI-SDR, and the per-mixture scores."""
    scores = [separation_scores(e, it["references"], it["mixture"]) for e, it in zip(estimates, items)]
    audio_seconds = sum(len(it["mixture"]) for it in items) / RATE
    row = {"method": name, "rtf": None if cpu_seconds is None else cpu_seconds / audio_seconds}
    for n, source in enumerate(SOURCES):
        for key in SCORES:
            row[f"{source}_{key}"] = float(np.mean([s[key][n] for s in scores]))
        for ratio in sorted({it["ratio"] for it in items}):
            row[f"{source}_si_sdr@{ratio:g}"] = float(np.mean([s["si_sdr"][n] for s, it in zip(scores, items)
                                                               if it["ratio"] == ratio]))
    row["per_mixture"] = [{"ratio": it["ratio"], "pair": it["pair"], "flute_file": it["flute_file"], **s}
                          for s, it in zip(scores, items)]
    return row


def mixture_row(items: list[dict]) -> dict:
    """The unprocessed mixture as the estimate of both sources."""
    return evaluate("mixture", [np.stack([it["mixture"]] * 2) for it in items], items, None)


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    for flag, rank in (("--nmf-rank", args.nmf_rank), ("--speech-nmf-rank", args.speech_nmf_rank)):
        if rank is not None and rank < 1:
            raise UsageError(f"{flag} must be a positive rank, got {rank}")
    torch.set_num_threads(1)
    if args.ship_nmf:
        return ship_nmf(args)
    flute_prior = load_prior(args.flute_prior)
    audio = flute_data(flute_prior)
    settings = dataclass_overrides(SeparateConfig, args.set)  # a bad --set fails before any work
    items = build_set(args, audio)
    waves = [it["mixture"] for it in items]
    priors = load_sources([args.speech_prior], "mixdvae") + [flute_prior]
    speech_basis = load_sources(["speech"], "nmf") if args.speech_nmf_rank is None else \
        [learn_speech_basis(resolve_path(args.corpus), args.speech_nmf_rank)]
    bases = speech_basis + [learn_flute_basis(audio, args.nmf_rank, args.seed, args.flute_nmf_files)]
    rows = [mixture_row(items)]
    nmf = nmf_separate(waves, bases)
    rows.append(evaluate("supervised NMF", nmf.sources, items, nmf.cpu_seconds))
    for variant in args.variants:
        overrides = dict(VARIANTS[variant]) | {"seed": args.seed} | settings
        if args.iterations is not None:
            overrides["iterations"] = args.iterations
        config = SeparateConfig(**overrides)
        with tqdm(total=len(items), desc=f"MixDVAE {variant}", unit="mix", disable=args.no_progress,
                  file=sys.stderr) as bar:
            estimates, cpu = [], 0.0
            for wave in waves:  # one mixture at a time: the real-time factor of a single file
                result = separate(wave, priors, config, bases=bases)
                estimates.append(result.sources[0])
                cpu += result.cpu_seconds
                bar.update(1)
        row = evaluate(f"MixDVAE {variant}", estimates, items, cpu)
        row["config"] = vars(config)
        rows.append(row)
    bound = SeparateConfig(**({"seed": args.seed} | settings))  # the default variant's settings
    estimates = [exact_inference_separate(it["mixture"], it["references"], priors, bound) for it in items]
    rows.append(evaluate(BOUND, estimates, items, None))
    for kind in ("irm", "ibm"):
        start = time.process_time()
        estimates = [oracle_separate(it["mixture"], it["references"], kind) for it in items]
        rows.append(evaluate(f"oracle {kind.upper()}", estimates, items, time.process_time() - start))
    print(describe(args, audio, items))
    print(format_table(rows))
    comparisons = compare(rows, args.seed)
    print(format_comparisons(comparisons))
    if args.json:
        summary = {"set": describe(args, audio, items), "args": {k: str(v) for k, v in vars(args).items()},
                   "rows": rows, "comparisons": comparisons}
        atomic_write_text(args.json, json.dumps(summary, indent=1, default=float))
    return 0


def ship_nmf(args) -> int:
    """Learn the NMF basis of the source class ``--ship-nmf`` (speech: on the corpus's training split; any other:
    on ``--flute-prior``'s training files or ``--flute-nmf-files``), rank ``--nmf-rank``, and write
    ``data/priors/nmf_CLASS.pt``."""
    if not args.ship_nmf.isidentifier():
        raise UsageError(f"--ship-nmf: {args.ship_nmf!r} is not a source class name (letters, digits, _)")
    if args.ship_nmf == "speech":
        basis = learn_speech_basis(resolve_path(args.corpus), args.nmf_rank)
        source = f"{basis.meta['utterances']} utterances of {args.corpus}"
    else:
        basis = learn_flute_basis(flute_data(load_prior(args.flute_prior)), args.nmf_rank, args.seed,
                                  args.flute_nmf_files)
        source = f"files {basis.meta['files']}"
    path = PRIORS_DIR / f"nmf_{args.ship_nmf}.pt"
    basis.save(path)
    print(f"shipped {path} (rank {args.nmf_rank}, {source})")
    return 0


def describe(args, audio: dict, items: list[dict]) -> str:
    flute_files = sorted({it["flute_file"] for it in items})
    speech_prior = source_path(args.speech_prior, "mixdvae")  # a shipped prior by its name, any other as given
    speech_prior = speech_prior.stem if speech_prior.parent == PRIORS_DIR else args.speech_prior
    return (f"{len(items)} mixtures of {args.seconds:g} s ({args.pairs} pairs x ratios {args.ratios} dB), split "
            f"{args.split}, seed {args.seed}; speech prior {speech_prior}, flute prior {args.flute_prior} "
            f"(trained on {audio['train']}); flute files {flute_files}; flute NMF basis on "
            f"{flute_nmf_patterns(audio, args.flute_nmf_files)}; speech NMF basis "
            f"{'nmf_speech' if args.speech_nmf_rank is None else f'of rank {args.speech_nmf_rank}, learned now'}")


def format_table(rows: list[dict]) -> str:
    """Markdown table: per method, the four scores of each source and the real-time factor."""
    head = "| method | " + " | ".join(f"{s} {k.upper().replace('_', '-')}" for s in SOURCES for k in SCORES)
    lines = [head + " | RTF |", "|---" * (2 + len(SOURCES) * len(SCORES)) + "|"]
    for row in rows:
        cells = " | ".join(f"{row[f'{s}_{k}']:.2f}" for s in SOURCES for k in SCORES)
        rtf = "" if row["rtf"] is None else f"{row['rtf']:.2f}"
        lines.append(f"| {row['method']} | {cells} | {rtf} |")
    return "\n".join(lines)


def compare(rows: list[dict], seed: int) -> dict[str, dict]:
    """Per MixDVAE variant: the paired per-mixture SI-SDR differences to supervised NMF and to the oracle IRM,
    per source (mean and 95 % bootstrap interval)."""
    by_name = {row["method"]: row for row in rows}
    out = {}
    for row in rows:
        if not row["method"].startswith("MixDVAE"):
            continue
        for other in ("supervised NMF", "oracle IRM"):
            pairs = zip(row["per_mixture"], by_name[other]["per_mixture"], strict=True)
            diffs = np.array([np.asarray(a["si_sdr"]) - np.asarray(b["si_sdr"]) for a, b in pairs])  # (M, sources)
            out[f"{row['method']} minus {other}"] = {
                source: mean_interval(diffs[:, n], seed=seed).as_dict() for n, source in enumerate(SOURCES)}
    return out


def format_comparisons(comparisons: dict[str, dict]) -> str:
    lines = ["SI-SDR differences, paired over the mixtures (mean [95% CI]):"]
    width = max((len(name) for name in comparisons), default=0) + 2
    for name, per_source in comparisons.items():
        cells = "  ".join(f"{source} {Interval(**ci).format()}" for source, ci in per_source.items())
        lines.append(f"  {name:<{width}}{cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
