#!/usr/bin/env python
"""Unsupervised speech enhancement (DVAE-VEM, VAE-VEM or NMF-VEM) of noisy 16 kHz recordings.

Speech priors learned on clean speech only (default: the shipped DKF and VAE together, ``dkf_speech vae_speech``,
in one joint VEM) are plugged into a variational EM that also learns the noise of each recording
(NMF) and a per-frame gain (``mixdvae/audio/enhance.py``). For every input NAME it writes
``NAME_enhanced.wav`` (16 kHz, 16-bit) and ``NAME.png`` (spectrograms: noisy / enhanced / clean when given) in
``--out``; with clean references it prints SI-SDR, PESQ-WB and ESTOI of the input and of the output. Inputs
are checked before anything is written, and every file is written atomically.

Examples:
    python tools/enhance.py --demo --out /tmp/demo                       # the shipped example (0 dB, rain)
    python tools/enhance.py noisy.wav --out enhanced/
    python tools/enhance.py noisy_dir/ --clean clean_dir/ --out enhanced/ --json scores.json
    python tools/enhance.py a.wav b.flac --prior dkf_speech --iterations 60 --device cuda   # one prior
    python tools/enhance.py noisy.wav --prior nmf --out nmf_out/          # NMF-VEM baseline
    python tools/enhance.py podcast.wav --segment 20 --out enhanced/        # long file: 20 s segments

Clean references: one file per input in the same order, or a folder holding a file of the same name as each
input. Another sample rate is resampled to 16 kHz (with a notice); stereo, empty, silent, NaN or too short
(< 1024 samples) input is refused with a message naming the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mixdvae.audio import DEFAULT_STFT, MODEL_RATE, read_audio, write_audio
from mixdvae.audio.enhance import JOINT_PRIORS, EnhanceConfig, default_config, enhance, load_speech_prior
from mixdvae.audio.io import AUDIO_SUFFIXES
from mixdvae.audio.metrics import estoi, pesq_wb, si_sdr
from mixdvae.audio.plotting import plot_spectrograms
from mixdvae.cli import add_audio_run_options, guarded, parser
from mixdvae.config import parse_device
from mixdvae.errors import DataNotFoundError, InputError, UsageError
from mixdvae.mot import atomic_write_text
from mixdvae.resources import shipped_dir

METRICS = ("si_sdr", "pesq", "estoi")


def parse_args(argv=None):
    ap = parser(__doc__)
    ap.add_argument("inputs", nargs="*", type=Path, help="noisy audio files or folders (.wav, .flac, .ogg)")
    ap.add_argument("--out", type=Path, default=Path("enhanced"), help="output folder (default: ./enhanced)")
    ap.add_argument("--prior", nargs="+", default=list(JOINT_PRIORS), metavar="PRIOR",
                    help=f"speech prior(s): dkf_speech, rvae_speech or srnn_speech (DVAE-VEM), vae_speech (VAE-VEM), "
                         f"nmf (NMF-VEM) or a checkpoint path; several DVAE/VAE priors run as one joint VEM (default: "
                         f"{' '.join(JOINT_PRIORS)})")
    ap.add_argument("--weights", nargs="+", type=float, metavar="W",
                    help="a joint VEM: the weight of each prior's posterior in the pooled speech model, in the order "
                         "of --prior (default: 2 for a DKF, 1 for the others; 1 1 pools them equally)")
    ap.add_argument("--clean", nargs="+", type=Path, metavar="REF", help="clean reference file(s) or a folder")
    ap.add_argument("--iterations", type=int, help=f"VEM iterations (default {EnhanceConfig.iterations})")
    ap.add_argument("--segment", type=float, metavar="SECONDS",
                    help=f"enhance a longer input in segments of this length, overlapping by "
                         f"{EnhanceConfig.overlap} frames and cross-faded (default "
                         f"{EnhanceConfig.segment * DEFAULT_STFT.hop / MODEL_RATE:g} s; 0: the whole input at once, "
                         f"memory growing with its length)")
    add_audio_run_options(ap, "enhance the shipped example (noisy.wav, clean.wav)")
    args = ap.parse_args(argv)
    if args.demo:
        if args.inputs or args.clean:
            ap.error("--demo takes no inputs or --clean")
        demo = shipped_dir("audio_demo")
        args.inputs, args.clean = [demo / "noisy.wav"], [demo / "clean.wav"]
    audio = [p for p in args.prior if Path(p).suffix.lower() in AUDIO_SUFFIXES]
    if audio:  # --prior takes several values, so it swallows the inputs that follow it
        ap.error(f"--prior took the audio file(s) {' '.join(audio)}: put the inputs before --prior")
    if not args.inputs:
        ap.error("give noisy audio files or folders, or --demo")
    return args


def collect(paths: list[Path], what: str) -> list[Path]:
    """Audio files named by ``paths`` (folders: their audio files, sorted); DataNotFoundError for a missing path."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise DataNotFoundError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this {what} folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise DataNotFoundError(f"{path}: {what} file not found")
    return files


def match_references(noisy: list[Path], clean: list[Path] | None) -> list[Path | None]:
    """The clean reference of each noisy file: by position for files, by name for a folder."""
    if not clean:
        return [None] * len(noisy)
    if len(clean) == 1 and clean[0].is_dir():
        refs = [clean[0] / path.name for path in noisy]
        missing = [str(r) for r in refs if not r.is_file()]
        if missing:
            raise DataNotFoundError(f"no clean reference for {missing[0]} (matched by file name in {clean[0]})")
        return refs
    refs = collect(clean, "clean reference")
    if len(refs) != len(noisy):
        raise UsageError(f"{len(refs)} clean references for {len(noisy)} noisy files: give one per input, "
                         "in the same order, or a folder")
    return refs


def score(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {"si_sdr": si_sdr(estimate, reference), "pesq": pesq_wb(estimate, reference),
            "estoi": estoi(estimate, reference)}


def output_names(files: list[Path]) -> list[str]:
    """A distinct output stem per input (``name``, or ``parent_name`` when two inputs share a name)."""
    stems = [f.stem for f in files]
    return [f"{f.parent.name}_{f.stem}" if stems.count(f.stem) > 1 else f.stem for f in files]


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    parse_device(args.device, "enhance.py", "--device")
    overrides = {"seed": args.seed} | ({"iterations": args.iterations} if args.iterations is not None else {})
    if args.segment is not None:
        if args.segment < 0:
            raise UsageError(f"--segment {args.segment}: a length in seconds, or 0 for the whole input")
        frames = round(args.segment * MODEL_RATE / DEFAULT_STFT.hop)
        overrides["segment"] = max(frames, EnhanceConfig.overlap + 1) if args.segment else 0
    files = collect(args.inputs, "noisy")
    refs = match_references(files, args.clean)
    noisy = [read_audio(f).samples for f in files]
    clean = [None if r is None else read_audio(r).samples for r in refs]
    for f, r, x, s in zip(files, refs, noisy, clean, strict=True):
        if s is not None and len(s) != len(x):
            raise InputError(f"{r}: {len(s)} samples, but its noisy file {f} has {len(x)}")
    if args.weights is not None:
        if len(args.weights) != len(args.prior) or len(args.prior) < 2 or min(args.weights) <= 0:
            raise UsageError(f"--weights {' '.join(f'{w:g}' for w in args.weights)}: one positive weight per prior of "
                             f"a joint VEM ({len(args.prior)} prior(s) given)")
        overrides["member_weights"] = tuple(args.weights)
    priors = [load_speech_prior(name, device=args.device) for name in args.prior]
    prior = priors[0] if len(priors) == 1 else priors
    config = default_config(prior, **overrides)
    torch.set_num_threads(max(1, args.threads))
    total = sum(len(x) for x in noisy) / MODEL_RATE  # exact: the batches' updates add up to it
    with tqdm(total=total, desc=f"enhancing {len(files)} file(s), seconds of audio", unit="s",
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} [{elapsed}<{remaining}]",
              disable=args.no_progress, file=sys.stderr) as bar:
        # segments report fractions of an input's seconds, whose float sum may overshoot the total by an ulp
        result = enhance(noisy, prior, config, device=args.device,
                         progress=lambda seconds: bar.update(min(seconds, total - bar.n)))
    rows = []
    for f, name, x, y, s, cost in zip(files, output_names(files), noisy, result.enhanced, clean, result.cost.T,
                                      strict=True):
        row = {"input": str(f), "output": str(args.out / f"{name}_enhanced.wav"), "seconds": len(x) / MODEL_RATE,
               "final_cost": float(cost[-1])}
        if s is not None:
            before, after = score(x, s), score(y, s)
            row |= {f"{k}_in": before[k] for k in METRICS} | {f"{k}_out": after[k] for k in METRICS}
        rows.append((row, name, x, y, s))
    args.out.mkdir(parents=True, exist_ok=True)
    for row, name, x, y, s in rows:
        write_audio(row["output"], y)
        panels = {"noisy": x, "enhanced": y} | ({"clean": s} if s is not None else {})
        title = f"{Path(row['input']).name} ({' + '.join(args.prior)})"
        plot_spectrograms(args.out / f"{name}.png", panels, title=title)
    print(format_table([r[0] for r in rows]))
    print(f"{len(files)} file(s), {result.audio_seconds:.1f} s of audio in {result.seconds:.1f} s "
          f"(real-time factor {result.real_time_factor:.2f}); written to {args.out}")
    if args.json:
        summary = {"prior": args.prior, "config": vars(config), "real_time_factor": result.real_time_factor,
                   "files": [r[0] for r in rows]}
        atomic_write_text(args.json, json.dumps(summary, indent=2, default=float))
    return 0


def format_table(rows: list[dict]) -> str:
    """One line per file: its output, and with references each metric of the input, of the output and the
    improvement; a mean line when there are several files with references."""
    labels = ("SI-SDR", "PESQ-WB", "ESTOI")
    scored = [r for r in rows if "si_sdr_in" in r]
    if not scored:
        return "\n".join(f"{Path(r['input']).name} -> {r['output']}" for r in rows)
    head = f"{'file':<28}" + "".join(f"{label + ' in':>12}{'out':>8}{'gain':>8}" for label in labels)
    lines = [head]
    for row in scored:
        lines.append(f"{Path(row['input']).name[:27]:<28}" + _cells(row))
    if len(scored) > 1:
        mean = {key: float(np.nanmean([r[key] for r in scored])) for key in scored[0] if key.endswith(("_in", "_out"))}
        lines.append(f"{'mean':<28}" + _cells(mean))
    return "\n".join(lines)


def _cells(row: dict) -> str:
    return "".join(f"{row[f'{k}_in']:>12.2f}{row[f'{k}_out']:>8.2f}{row[f'{k}_out'] - row[f'{k}_in']:>+8.2f}"
                   for k in METRICS)


if __name__ == "__main__":
    sys.exit(main())
