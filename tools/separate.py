#!/usr/bin/env python
"""Single-channel source separation of 16 kHz mixtures (e.g. a person speaking over a flute) with MixDVAE: one
pretrained DVAE prior per source class inside a variational EM (``mixdvae/audio/separate.py``); baselines:
supervised NMF and, with references, the oracle ideal ratio / binary masks.

For every mixture NAME it writes ``NAME_<source>.wav`` per source (16 kHz, 16-bit) and ``NAME.png`` (the
spectrograms of the mixture, of each estimate and, with ``--refs``, of each reference) in ``--out``; with
references it prints SI-SDR, SDR, SIR and SAR per source and the gain of the first three over the mixture. Inputs,
references and priors are all checked before anything is written, and every file is written atomically.

Examples:
    python tools/separate.py --demo --out /tmp/sep_demo                  # shipped speech + flute clip (0 dB)
    python tools/separate.py mix.wav --sources speech flute --out sep/
    python tools/separate.py mixes/ --refs refs/ --out sep/ --json scores.json
    python tools/separate.py mix.wav --sources speech runs/my_flute/srnn.pt --out sep/
    python tools/separate.py mix.wav --method nmf --refs speech.wav flute.wav --out nmf/

Sources: a class name (``speech`` -> the shipped prior ``rvae_speech``, ``flute`` -> ``srnn_flute``; ``nmf_<class>``
with ``--method nmf``) or the name or path of a checkpoint (an SRNN, DKF or RVAE prior of power spectra, e.g.
``srnn_speech``; an NMF basis for ``--method nmf``). MixDVAE starts from supervised NMF's estimate of each source
(``--init nmf``, the default), so it also loads one NMF basis per source: ``nmf_<class>`` for a class name, else the
ones given by ``--bases``; ``--init reconstruction`` (the paper's start) needs none. References
(``--refs``): one file per source for each mixture, mixture by mixture in the order of ``--sources``, or a
folder holding ``<mixture name>_<source>.wav`` (or .flac/.ogg). Stereo, empty, silent, NaN or too short input
is refused with a message naming the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mixdvae.audio import MODEL_RATE, read_audio, write_audio
from mixdvae.audio.io import AUDIO_SUFFIXES
from mixdvae.audio.plotting import plot_spectrograms
from mixdvae.audio.separate import (
    SCORES,
    SeparateConfig,
    load_sources,
    nmf_separate,
    oracle_separate,
    segment_starts,
    separate,
    separation_scores,
    source_label,
)
from mixdvae.audio.stft import DEFAULT_STFT
from mixdvae.cli import add_audio_run_options, guarded, parser
from mixdvae.config import parse_device
from mixdvae.dvae import prior_path
from mixdvae.errors import DataNotFoundError, InputError, UsageError
from mixdvae.mot import atomic_write_text
from mixdvae.resources import shipped_dir
from mixdvae.tools.enhance import collect, output_names

METHODS = ("mixdvae", "nmf", "irm", "ibm")
IMPROVED = ("si_sdr", "sdr", "sir")  # scores shown with their gain over the mixture (its SAR is meaningless)
DEMO_FILES = ("speech_flute.wav", "clean.wav", "speech_flute_flute.wav")  # data/audio/demo: mixture, speech, flute


def parse_args(argv=None):
    ap = parser(__doc__)
    ap.add_argument("inputs", nargs="*", type=Path, help="mixture audio files or folders (.wav, .flac, .ogg)")
    ap.add_argument("--sources", nargs="+", default=["speech", "flute"],
                    help="one source class name or checkpoint path per source (default: speech flute)")
    ap.add_argument("--method", choices=METHODS, default="mixdvae",
                    help="mixdvae (default), nmf (supervised NMF), irm / ibm (oracle masks: need --refs)")
    ap.add_argument("--out", type=Path, default=Path("separated"), help="output folder (default: ./separated)")
    ap.add_argument("--refs", nargs="+", type=Path, metavar="REF", help="reference sources: files or a folder")
    ap.add_argument("--init", choices=("nmf", "reconstruction"),
                    help=f"MixDVAE's starting source powers: supervised NMF's estimates (needs an NMF basis per "
                         f"source) or each prior's reconstruction of the mixture, the paper's (default "
                         f"{SeparateConfig.init})")
    ap.add_argument("--bases", nargs="+", metavar="BASIS",
                    help="NMF basis (name or path) per source for --init nmf, in --sources order (default: "
                         "nmf_<class> of each class name)")
    ap.add_argument("--iterations", type=int, help=f"VEM iterations (default {SeparateConfig.iterations})")
    ap.add_argument("--sampling", choices=("gaussian", "mean", "tempered"),
                    help=f"draws of the VEM (default {SeparateConfig.sampling})")
    ap.add_argument("--mixture", choices=("additive", "per_bin"),
                    help=f"mixture model: sources that add (each bin split by the Wiener gain of the sources' "
                         f"variances) or the paper's per-bin assignment (default {SeparateConfig.mixture}); "
                         f"--assignment, --output and --mask-exponent need per_bin")
    ap.add_argument("--assignment", choices=("marginal", "mean_field"),
                    help=f"per_bin mixture's E-W: p(w | x, v) at each step, or the paper's mean-field update "
                         f"(default {SeparateConfig.assignment})")
    ap.add_argument("--output", choices=("power", "assignment", "posterior"), nargs="+",
                    help=f"per_bin mixture's output mask, one for all sources or one per source: the ratio of the "
                         f"sources' posterior powers or the assignment eta (both sum to 1 over sources), or the "
                         f"posterior-mean gain a (default {SeparateConfig.output})")
    ap.add_argument("--mask-exponent", type=float, metavar="K",
                    help=f"per_bin mixture's power mask: posterior powers raised to K before their ratio (default "
                         f"{SeparateConfig.mask_exponent})")
    ap.add_argument("--average", type=int, help=f"output gains averaged over the last N iterations "
                                                f"(default {SeparateConfig.average})")
    ap.add_argument("--rho", type=float, help=f"v_x = rho |x|^2 (default: {SeparateConfig.RHO['additive']} for the "
                                              f"additive mixture, {SeparateConfig.RHO['per_bin']} for per_bin)")
    ap.add_argument("--update-rho", action="store_true", default=None, help="re-estimate rho (M-step)")
    ap.add_argument("--equalise", type=int, nargs="+", metavar="ROUNDS",
                    help=f"EM rounds per iteration of a source's per-bin gain (a timbre its prior never heard), one "
                         f"number for all sources or one per source (e.g. 0 10 for an instrument far from its "
                         f"prior's timbre); 0: none (default {SeparateConfig.equalise})")
    ap.add_argument("--passes", type=int, help=f"VEM passes; each pass after the first starts from NMF bases "
                                               f"adapted to the previous estimate, see --adapt (default "
                                               f"{SeparateConfig.passes})")
    ap.add_argument("--adapt", type=int, nargs="+", metavar="RANK",
                    help="between passes, the rank of the NMF basis learned on a source's own estimate and added to "
                         "its class basis, one number for all sources or one per source (e.g. 0 32: adapt the "
                         f"instrument); 0: none (default {SeparateConfig.adapt})")
    ap.add_argument("--refine", type=int, metavar="N",
                    help=f"reconstruction passes after the VEM: each prior re-predicts its source from the finished "
                         f"estimate and the masks are recomputed; 0: none (default {SeparateConfig.refine})")
    ap.add_argument("--segment", type=int, help=f"frames per segment, 0 = whole signal "
                                                f"(default {SeparateConfig.segment})")
    add_audio_run_options(ap, "separate the shipped speech + flute example")
    args = ap.parse_args(argv)
    if args.demo:
        if args.inputs or args.refs:
            ap.error("--demo takes no inputs or --refs")
        demo = shipped_dir("audio_demo")
        args.inputs, args.refs = [demo / DEMO_FILES[0]], [demo / name for name in DEMO_FILES[1:]]
        if len(args.sources) != 2:  # other speech and flute priors may be named (e.g. srnn_speech flute)
            ap.error(f"--demo separates a speech and a flute source: give two --sources, got {len(args.sources)}")
    elif not args.inputs:
        ap.error("give mixture audio files or folders, or --demo")
    if args.method in ("irm", "ibm") and not args.refs:
        ap.error(f"--method {args.method} (an oracle mask) needs --refs")
    if args.bases and len(args.bases) != len(args.sources):
        ap.error(f"--bases: give one NMF basis per source ({len(args.sources)}), got {len(args.bases)}")
    for key, noun in SeparateConfig.PER_SOURCE.items():  # one value for all sources, or one per source
        values = getattr(args, key)
        if values and len(values) not in (1, len(args.sources)):
            ap.error(f"--{key}: give one {noun.removesuffix('(s)')} for all sources or one per source "
                     f"({len(args.sources)})")
        if values:
            setattr(args, key, values[0] if len(values) == 1 else tuple(values))
    labels = [source_label(s) for s in args.sources]
    if len(set(labels)) != len(labels):
        ap.error(f"--sources: two sources share the name {labels}; name the checkpoint files differently")
    return args


def config_from(args) -> SeparateConfig:
    """The separation config: the defaults with the options given on the command line."""
    keys = ("init", "iterations", "sampling", "mixture", "assignment", "average", "output", "mask_exponent", "rho",
            "update_rho", "equalise", "passes", "adapt", "refine", "segment", "seed")
    return SeparateConfig(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})


def match_references(mixtures: list[Path], refs: list[Path] | None, labels: list[str]) -> list[list[Path]] | None:
    """Per mixture, its reference file per source: from a folder (``<stem>_<label>.<ext>``) or the files given,
    mixture by mixture in source order."""
    if not refs:
        return None
    if len(refs) == 1 and refs[0].is_dir():
        out = []
        for mixture in mixtures:
            row = []
            for label in labels:
                found = [refs[0] / f"{mixture.stem}_{label}{s}" for s in AUDIO_SUFFIXES
                         if (refs[0] / f"{mixture.stem}_{label}{s}").is_file()]
                if not found:
                    raise DataNotFoundError(f"{refs[0]}: no reference {mixture.stem}_{label}.wav for {mixture}")
                row.append(found[0])
            out.append(row)
        return out
    files = collect(refs, "reference")
    if len(files) != len(mixtures) * len(labels):
        raise UsageError(f"{len(files)} reference files for {len(mixtures)} mixture(s) of {len(labels)} sources: "
                         f"give {len(mixtures) * len(labels)} (mixture by mixture, in --sources order) or a folder")
    return [files[i * len(labels) : (i + 1) * len(labels)] for i in range(len(mixtures))]


def read_references(mixtures: list[Path], waves: list[np.ndarray], refs: list[list[Path]] | None):
    """The reference signals (N, n) of each mixture, checked against its length; None without references."""
    if refs is None:
        return None
    out = []
    for mixture, wave, row in zip(mixtures, waves, refs):
        signals = []
        for path in row:
            samples = read_audio(path).samples
            if len(samples) != len(wave):
                raise InputError(f"{path}: {len(samples)} samples, but its mixture {mixture} has {len(wave)}")
            signals.append(samples)
        out.append(np.stack(signals))
    return out


def basis_names(args) -> list[str]:
    """The NMF basis of each source for MixDVAE's ``--init nmf``: ``--bases``, else ``nmf_<class>`` per source."""
    if args.bases:
        return args.bases
    names = [f"nmf_{source_label(source)}" for source in args.sources]
    for source, name in zip(args.sources, names):
        if not prior_path(name).is_file():
            raise UsageError(f"--init nmf: source {source!r} has no shipped NMF basis {name}; give one NMF basis "
                             f"per source with --bases, or use --init reconstruction")
    return names


def run(args, config: SeparateConfig, waves: list[np.ndarray], references, models, bases):
    """The separated sources of every mixture (a list of (N, n) arrays) and the engine's result record (None for
    the oracle masks)."""
    total = config.passes * sum(len(segment_starts(DEFAULT_STFT.n_frames(len(w)), config.segment, config.overlap))
                                for w in waves)
    if args.method == "mixdvae":
        with tqdm(total=total, desc="separating", unit="segment", disable=args.no_progress, file=sys.stderr) as bar:
            result = separate(waves, models, config, device=args.device, progress=bar.update, bases=bases)
        return result.sources, result
    if args.method == "nmf":
        result = nmf_separate(waves, models, config, device=args.device)
        return result.sources, result
    return [oracle_separate(w, r, args.method) for w, r in zip(waves, references)], None


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    parse_device(args.device, "separate.py", "--device")
    torch.set_num_threads(max(1, args.threads))
    config = config_from(args)
    labels = [source_label(s) for s in args.sources]
    files = collect(args.inputs, "mixture")
    refs = match_references(files, args.refs, labels)
    waves = [read_audio(f).samples for f in files]
    references = read_references(files, waves, refs)
    models = load_sources(args.sources, "nmf" if args.method == "nmf" else "mixdvae", args.device) \
        if args.method in ("mixdvae", "nmf") else None
    bases = load_sources(basis_names(args), "nmf", args.device) \
        if args.method == "mixdvae" and config.init == "nmf" else None
    estimates, record = run(args, config, waves, references, models, bases)
    rows = []
    for index, (f, name) in enumerate(zip(files, output_names(files))):
        row = {"input": str(f), "seconds": len(waves[index]) / MODEL_RATE,
               "outputs": {label: str(args.out / f"{name}_{label}.wav") for label in labels}}
        if record is not None and len(record.cost[index]):
            row |= {"final_cost": float(record.cost[index][-1]), "rho": record.rho[index]}
        if references is not None:
            row["scores"] = separation_scores(estimates[index], references[index], waves[index])
        rows.append((row, name))
    args.out.mkdir(parents=True, exist_ok=True)
    for (row, name), estimate, index in zip(rows, estimates, range(len(rows))):
        for label, source in zip(labels, estimate):
            write_audio(row["outputs"][label], source)
        panels = {"mixture": waves[index]} | {f"estimate: {label}": s for label, s in zip(labels, estimate)}
        if references is not None:
            panels |= {f"reference: {label}": s for label, s in zip(labels, references[index])}
        plot_spectrograms(args.out / f"{name}.png", panels, title=f"{Path(row['input']).name} ({args.method})")
    print(format_table([r for r, _ in rows], labels))
    audio_seconds = sum(len(w) for w in waves) / MODEL_RATE
    timing = "" if record is None else (f" in {record.seconds:.1f} s (real-time factor "
                                         f"{record.real_time_factor:.2f})")
    print(f"{len(files)} file(s), {audio_seconds:.1f} s of audio{timing}; written to {args.out}")
    if args.json:
        summary = {"method": args.method, "sources": args.sources, "config": vars(config),
                   "real_time_factor": None if record is None else record.real_time_factor,
                   "files": [r for r, _ in rows]}
        atomic_write_text(args.json, json.dumps(summary, indent=2, default=float))
    return 0


def format_table(rows: list[dict], labels: list[str]) -> str:
    """One line per file and source: each score and its improvement over the mixture; a mean line per source
    when there are several files with references."""
    scored = [r for r in rows if "scores" in r]
    if not scored:
        return "\n".join(f"{Path(r['input']).name} -> {', '.join(r['outputs'].values())}" for r in rows)
    head = f"{'file':<24}{'source':<10}" + "".join(
        f"{name.upper().replace('_', '-'):>9}" + (f"{'(+)':>8}" if name in IMPROVED else "") for name in SCORES)
    lines = [head]
    for row in scored:
        for n, label in enumerate(labels):
            lines.append(f"{Path(row['input']).name[:23]:<24}{label[:9]:<10}" + _cells(row["scores"], n))
    if len(scored) > 1:
        for n, label in enumerate(labels):
            mean = {k: [float(np.mean([r["scores"][k][n] for r in scored]))] for k in scored[0]["scores"]}
            lines.append(f"{'mean':<24}{label[:9]:<10}" + _cells(mean, 0))
    return "\n".join(lines)


def _cells(scores: dict, n: int) -> str:
    return "".join(f"{scores[k][n]:>9.2f}" + (f"{scores[k][n] - scores[k + '_mix'][n]:>+8.2f}" if k in IMPROVED else "")
                   for k in SCORES)


if __name__ == "__main__":
    sys.exit(main())
