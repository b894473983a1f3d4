#!/usr/bin/env python
"""Speech-enhancement benchmark: DVAE-VEM against VAE-VEM, NMF-VEM and classical peers, on one CPU core.

Test set (seeded): clips of the held-out speaker (the corpus's ``test`` split: June, fr_CA, never heard by
the priors), each made of consecutive utterances joined to at least ``--clip-seconds``, mixed with an excerpt
of a recording drawn from ``--noise`` (default ``../shared/data/audio/noise``: real ambient recordings) at
each SNR of ``--snrs`` (-5, 0, 5 dB; ``--clips`` clips per SNR). The priors are trained on clean speech only,
so every noise is unseen. ``--split val`` builds the same kind of set from the validation utterances of the
training speakers (for tuning; never tune on the test speaker). ``--pairs DIR`` reads DIR/clean/NAME and
DIR/noisy/NAME instead.

Methods: the noisy input; ``noisereduce`` (stationary and non-stationary spectral gating);
``pyroomacoustics`` spectral subtraction (its output is delayed by nfft/2 = 256 samples: shifted back before
scoring); ``logmmse``; NMF-VEM (a speech basis learned on the training split), VAE-VEM (``vae_speech``),
DVAE-VEM (``dkf_speech``; ``--dvae-prior rvae_speech`` or ``srnn_speech`` for the others), DVAE-VEM with two DVAE
priors (``dvae-pair``: ``dkf_speech`` and ``rvae_speech``, the RVAE's posterior weighted twice) and the joint VEM of
``--joint-priors`` (default ``dkf_speech vae_speech``, the default of ``tools/enhance.py``; ``--joint-weights``
weighs them), all with the same engine and its default settings for their kind of prior
(``mixdvae.audio.enhance.default_config``; the command line's override them). A peer that is not installed
(``pip install -e ".[bench]"``) is reported as skipped. Metrics: SI-SDR (dB), PESQ-WB, ESTOI, mean over the
mixtures and mean improvement over the input with its 95 % bootstrap interval (mixtures resampled, seeded), then
the joint VEM's paired differences to every other method, and DVAE-VEM's and the DVAE pair's to VAE-VEM (does
temporal modelling help: the keynote's claim), with their intervals (one that
excludes 0 is a difference the set resolves); real-time factor = CPU seconds of processing per audio second
with ``torch.set_num_threads(1)`` (process CPU time: one core; another busy process on the machine still slows it
through the shared caches and memory, so time the table alone; the VEMs process the set in batches of
``EnhanceConfig.batch_size``). With ``--device cuda`` the VEMs run on the GPU and their real-time factor is wall
seconds per audio second (the peers stay on the CPU).

Examples:
    python tools/benchmark_enhance.py --json /tmp/enhance_bench.json
    python tools/benchmark_enhance.py --split val --methods dvae-vem vae-vem --iterations 60
    python tools/benchmark_enhance.py --pairs my_pairs/ --methods logmmse dvae-vem
    python tools/benchmark_enhance.py --methods noisy vae-vem dvae-pair       # two DVAE priors against VAE-VEM
    python tools/benchmark_enhance.py --methods noisy joint-vem --joint-priors dkf_speech vae_speech --joint-weights 1 1
    python tools/benchmark_enhance.py --export /tmp/pairs      # the test set as clean/noisy wavs
    python tools/benchmark_enhance.py --pairs /tmp/pairs --methods noisy joint-vem --device cuda --set batch_size=24
    python tools/benchmark_enhance.py --ship-nmf             # (re)learn and ship data/priors/nmf_speech_vem.pt
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mixdvae.audio import read_audio, write_audio
from mixdvae.audio.corpus import load_split
from mixdvae.audio.enhance import (
    DVAE_PAIR,
    DVAE_PAIR_WEIGHTS,
    JOINT_PRIORS,
    NMF_PRIOR_NAME,
    PRIOR_SETTINGS,
    EnhanceConfig,
    NMFBasis,
    default_config,
    enhance,
    learn_speech_basis,
    load_speech_prior,
)
from mixdvae.audio.io import AUDIO_SUFFIXES, MODEL_RATE
from mixdvae.audio.metrics import Interval, estoi, mean_interval, pesq_wb, si_sdr
from mixdvae.audio.mixing import mix_at_snr
from mixdvae.cli import guarded, parser
from mixdvae.config import dataclass_overrides, parse_device, parse_override
from mixdvae.dvae import PRIORS_DIR
from mixdvae.errors import DataNotFoundError, UsageError
from mixdvae.mot import atomic_write_text
from mixdvae.resources import CHECKOUT_ROOT, shared_data

PEERS = ("noisereduce-stationary", "noisereduce-nonstationary", "pra-specsub", "logmmse")
VEMS = {"nmf-vem": ("nmf",), "vae-vem": ("vae_speech",), "dvae-vem": ("dkf_speech",), "dvae-pair": DVAE_PAIR,
        "joint-vem": JOINT_PRIORS}
METHODS = ("noisy", *PEERS, *VEMS)
METRICS = ("si_sdr", "pesq", "estoi")
DIGITS = {"si_sdr": 2, "pesq": 2, "estoi": 3}  # decimals printed per metric
GAP_SECONDS = 0.15  # silence between the utterances of a clip
PRA_DELAY = 256  # samples of delay of pyroomacoustics' spectral subtraction (nfft / 2 with nfft = 512)


@dataclass
class Mixture:
    name: str
    clean: np.ndarray  # (N,) float32, 16 kHz
    noisy: np.ndarray  # (N,)
    snr: float | None
    noise: str


def parse_args(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--corpus", type=Path, default=(CHECKOUT_ROOT or Path.cwd()) / "data" / "speech",
                    help="speech corpus folder of tools/make_speech_corpus.py (default data/speech)")
    ap.add_argument("--split", choices=("test", "val"), default="test", help="speech split of the mixtures")
    ap.add_argument("--noise", type=Path, default=shared_data("audio", "noise"), help="folder of noise recordings")
    ap.add_argument("--pairs", type=Path, metavar="DIR", help="read DIR/clean/* and DIR/noisy/* instead")
    ap.add_argument("--snrs", type=float, nargs="+", default=[-5.0, 0.0, 5.0], help="SNRs in dB (default -5 0 5)")
    ap.add_argument("--clips", type=int, default=8, help="clips per SNR (default 8)")
    ap.add_argument("--clip-seconds", type=float, default=4.0, help="minimum clip length (default 4 s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the test set and of the VEMs (default 0)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    ap.add_argument("--iterations", type=int, help=f"VEM iterations (default {EnhanceConfig.iterations})")
    ap.add_argument("--encoder-steps", type=int, help=f"Adam steps per E-Z (default {EnhanceConfig.encoder_steps})")
    ap.add_argument("--lr", type=float, help=f"encoder learning rate (default {EnhanceConfig.lr}, the SRNN's "
                                                   f"{PRIOR_SETTINGS['srnn']['lr']}: PRIOR_SETTINGS)")
    ap.add_argument("--noise-rank", type=int, help=f"NMF noise rank K (default {EnhanceConfig.noise_rank})")
    ap.add_argument("--tune", choices=("head", "encoder"), help=f"tuned encoder part (default {EnhanceConfig.tune})")
    ap.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE",
                    help="any other EnhanceConfig setting of the VEMs, e.g. --set m_steps=6 (repeatable)")
    ap.add_argument("--dvae-prior", default=VEMS["dvae-vem"][0], help="prior of DVAE-VEM (name or path)")
    ap.add_argument("--vae-prior", default=VEMS["vae-vem"][0], help="prior of VAE-VEM (name or path)")
    ap.add_argument("--joint-priors", nargs="+", default=list(VEMS["joint-vem"]), metavar="PRIOR",
                    help=f"priors of the joint VEM (names or paths; default {' '.join(VEMS['joint-vem'])})")
    ap.add_argument("--joint-weights", nargs="+", type=float, metavar="W",
                    help="the weight of each joint prior's posterior, in the order of --joint-priors (default: 2 for "
                         "a DKF, 1 for the others); the other VEMs are unaffected")
    ap.add_argument("--ship-nmf", action="store_true",
                    help=f"learn the NMF speech basis on the training split and write data/priors/{NMF_PRIOR_NAME}.pt")
    ap.add_argument("--device", default="cpu",
                    help="device of the VEMs: cpu (default; RTF = CPU seconds on one core) or cuda (RTF = wall "
                         "seconds; the peers stay on the CPU)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the table and the per-mixture scores")
    ap.add_argument("--export", type=Path, metavar="DIR",
                    help="write the test set as DIR/clean/NAME.wav and DIR/noisy/NAME.wav (float, 16 kHz) and stop: "
                         "for other enhancers, or --pairs DIR on a machine without the corpus")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)
    if args.clips < 1 or args.clip_seconds <= 0:
        ap.error("--clips and --clip-seconds must be positive")
    return args


# --------------------------------------------------------------------------------------------------------------
# the test set


def build_mixtures(corpus: Path, split: str, noise_dir: Path, snrs: list[float], clips: int, clip_seconds: float,
                   seed: int) -> list[Mixture]:
    """Seeded mixtures: ``clips`` clips per SNR, each of consecutive utterances of ``split`` joined to at least
    ``clip_seconds``, plus an excerpt of a noise recording drawn from ``noise_dir``."""
    speech = load_split(corpus, split)
    noises = sorted(p for p in noise_dir.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if noise_dir.is_dir() else []
    if not noises:
        raise DataNotFoundError(f"{noise_dir}: no noise recordings (read in place from ../shared/data/audio/noise)")
    rng = np.random.default_rng(seed)
    gap = np.zeros(int(GAP_SECONDS * MODEL_RATE), np.float32)
    count = len(speech.offsets) - 1
    cache: dict[Path, np.ndarray] = {}
    mixtures = []
    for snr in snrs:
        for index in range(clips):
            first = int(rng.integers(count))
            pieces, length, u = [], 0, first
            while length < clip_seconds * MODEL_RATE:
                utterance = speech.samples[speech.offsets[u % count] : speech.offsets[u % count + 1]]
                pieces += [utterance, gap]
                length += len(utterance) + len(gap)
                u += 1
            clean = np.concatenate(pieces[:-1])
            noise_path = noises[int(rng.integers(len(noises)))]
            if noise_path not in cache:
                cache[noise_path] = read_audio(noise_path, quiet=True).samples
            mix = mix_at_snr(clean, cache[noise_path], snr, rng)
            mixtures.append(Mixture(f"{split}{index:02d}_{snr:+.0f}dB_{noise_path.stem}", mix.speech, mix.mixture,
                                    snr, noise_path.stem))
    return mixtures


def read_pairs(root: Path) -> list[Mixture]:
    """Mixtures from ``root/noisy/NAME`` and ``root/clean/NAME`` (same names, same lengths)."""
    noisy_dir, clean_dir = root / "noisy", root / "clean"
    if not noisy_dir.is_dir() or not clean_dir.is_dir():
        raise DataNotFoundError(f"{root}: expected the folders noisy/ and clean/ with files of the same names")
    mixtures = []
    for path in sorted(p for p in noisy_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        clean_path = clean_dir / path.name
        if not clean_path.is_file():
            raise DataNotFoundError(f"{clean_path}: no clean reference for {path}")
        noisy, clean = read_audio(path).samples, read_audio(clean_path).samples
        n = min(len(noisy), len(clean))
        mixtures.append(Mixture(path.stem, clean[:n], noisy[:n], None, "?"))
    if not mixtures:
        raise DataNotFoundError(f"{noisy_dir}: no audio files")
    return mixtures


def export_pairs(mixtures: list[Mixture], root: Path) -> None:
    """Write ``root/clean/NAME.wav`` and ``root/noisy/NAME.wav`` (32-bit float: :func:`read_pairs` gets the same
    samples back), each file atomically."""
    for m in mixtures:
        for kind, samples in (("clean", m.clean), ("noisy", m.noisy)):
            (root / kind).mkdir(parents=True, exist_ok=True)
            write_audio(root / kind / f"{m.name}.wav", samples, subtype="FLOAT")
    print(f"wrote {len(mixtures)} clean/noisy pairs to {root}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------------------
# methods: each maps a list of noisy waveforms to enhanced waveforms of the same lengths


def peer_function(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The enhancement function of a peer, or None when its package is not installed."""
    try:
        if name.startswith("noisereduce"):
            import noisereduce

            stationary = name.endswith("-stationary")
            return lambda x: noisereduce.reduce_noise(y=x, sr=MODEL_RATE, stationary=stationary)
        if name == "pra-specsub":
            from pyroomacoustics.denoise.spectral_subtraction import apply_spectral_sub

            def specsub(x):
                y = apply_spectral_sub(x, nfft=512, db_reduc=25, lookback=12, beta=30, alpha=1)
                return np.concatenate([y[PRA_DELAY:], np.zeros(PRA_DELAY)])

            return specsub
        if name == "logmmse":
            from logmmse import logmmse

            return lambda x: logmmse(x, MODEL_RATE)
    except ImportError:
        return None
    raise UsageError(f"unknown peer {name!r}")


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples, float32."""
    y = np.asarray(y, dtype=np.float32).ravel()[:n]
    return np.pad(y, (0, n - len(y)))


def vem_config(args, prior=None) -> EnhanceConfig:
    """The settings of a VEM: :func:`default_config` for ``prior`` (None: the plain defaults), then the command
    line's."""
    options = {"iterations": args.iterations, "encoder_steps": args.encoder_steps, "lr": args.lr,
               "noise_rank": args.noise_rank, "tune": args.tune}
    options = {k: v for k, v in options.items() if v is not None}
    options = {"seed": args.seed, **options, **dataclass_overrides(EnhanceConfig, args.set)}
    return EnhanceConfig(**options) if prior is None else default_config(prior, **options)


def nmf_basis(args) -> NMFBasis:
    """The shipped NMF speech basis, or one learned now on the training split (written when ``--ship-nmf``)."""
    path = PRIORS_DIR / f"{NMF_PRIOR_NAME}.pt"
    if path.is_file() and not args.ship_nmf:
        return NMFBasis.load(path)
    basis = learn_speech_basis(args.corpus)
    if args.ship_nmf:
        basis.save(path)
        print(f"wrote {path} ({basis.meta['frames']} frames of {basis.meta['utterances']} training utterances)",
              file=sys.stderr)
    return basis


def run_method(name: str, mixtures: list[Mixture], args, basis: NMFBasis | None):
    """Enhanced waveforms, processing seconds (CPU seconds of one thread; a VEM on CUDA: wall seconds) and the VEM
    settings (None for the others), or None for a peer that is not installed."""
    noisy = [m.noisy for m in mixtures]
    if name == "noisy":
        return noisy, 0.0, None
    joints = {"joint-vem": (args.joint_priors, args.joint_weights), "dvae-pair": (DVAE_PAIR, DVAE_PAIR_WEIGHTS)}
    if name in VEMS:
        weights = None  # of a joint's priors; None: default_config's, by kind of prior
        if name == "nmf-vem":
            prior = basis
        elif name in joints:
            names, weights = joints[name]
            prior = [load_speech_prior(p) for p in names]
        else:
            prior = load_speech_prior(args.dvae_prior if name == "dvae-vem" else args.vae_prior)
        config = vem_config(args, prior)
        if weights:
            config = dataclasses.replace(config, member_weights=tuple(weights))
        result = enhance(noisy, prior, config, device=args.device)
        seconds = result.cpu_seconds if args.device == "cpu" else result.seconds
        return result.enhanced, seconds, dataclasses.asdict(config)
    function = peer_function(name)
    if function is None:
        return None
    start = time.process_time()
    out = [fit_length(function(x), len(x)) for x in noisy]
    return out, time.process_time() - start, None


def scores(estimate: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {"si_sdr": si_sdr(estimate, clean), "pesq": pesq_wb(estimate, clean), "estoi": estoi(estimate, clean)}


def format_table(table: dict[str, dict]) -> str:
    """Per method: each metric's mean and the mean gain over the input with its 95 % bootstrap interval."""
    head = (f"{'method':<28}{'SI-SDR':>7}{'gain [95% CI]':>23}{'PESQ-WB':>9}{'gain [95% CI]':>23}{'ESTOI':>7}"
            f"{'gain [95% CI]':>26}{'RTF':>7}   SI-SDR gain per SNR")
    lines = [head]
    for name, row in table.items():
        if row.get("skipped"):
            lines.append(f"{name:<28}skipped: {row['skipped']}")
            continue
        per_snr = "  ".join(f"{snr}: {gain:+.1f}" for snr, gain in row["si_sdr_gain_by_snr"].items())
        cells = ""
        for k in METRICS:
            gain = Interval(**row[f"{k}_gain_ci"]).format(DIGITS[k])
            cells += f"{row[k]:>{9 if k == 'pesq' else 7}.{DIGITS[k]}f}{gain:>{26 if k == 'estoi' else 23}}"
        lines.append(f"{name:<28}{cells}{row['rtf']:>7.3f}   {per_snr}")
    return "\n".join(lines)


def compare(per_mixture: dict[str, list[dict]], seed: int) -> dict[str, dict]:
    """Paired differences ``"A minus B"``: the joint VEM (the tools' default; DVAE-VEM when it did not run) minus
    every other method, then DVAE-VEM and the DVAE pair minus VAE-VEM (does the temporal prior help: the keynote's
    claim)."""
    ours = next((name for name in ("joint-vem", "dvae-vem") if name in per_mixture), None)
    pairs = [(ours, name) for name in per_mixture if ours and name not in (ours, "noisy")]
    for temporal in ("dvae-vem", "dvae-pair"):
        if (temporal, "vae-vem") not in pairs and {temporal, "vae-vem"} <= per_mixture.keys():
            pairs.append((temporal, "vae-vem"))
    return {f"{a} minus {b}": paired_differences(per_mixture[a], per_mixture[b], seed) for a, b in pairs}


def format_comparisons(comparisons: dict[str, dict]) -> str:
    """The paired differences of :func:`compare`, with their 95 % bootstrap intervals."""
    lines = ["Paired differences over the mixtures (mean [95% CI]; an interval that excludes 0 is a difference "
             "this set resolves):"]
    width = max(map(len, comparisons)) + 2
    for name, diff in comparisons.items():
        cells = "  ".join(f"{k.upper().replace('_', '-')} {Interval(**diff[k]).format(DIGITS[k])}" for k in METRICS)
        lines.append(f"  {name:<{width}}{cells}")
    return "\n".join(lines)


def paired_differences(rows_a: list[dict], rows_b: list[dict], seed: int) -> dict[str, dict]:
    """Mean and bootstrap interval of ``a - b`` per metric, over the mixtures (per-mixture score dicts)."""
    return {k: mean_interval([a[k] - b[k] for a, b in zip(rows_a, rows_b, strict=True)], seed=seed).as_dict()
            for k in METRICS}


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    # a bad --set fails before any work; weights of a joint's priors mean nothing to the single-prior VEMs
    if vem_config(args).member_weights is not None and set(args.methods) & (VEMS.keys() - {"joint-vem"}):
        raise UsageError("--set member_weights: weighs the priors of joint-vem only; run it with --methods noisy "
                         "joint-vem, or give --joint-weights")
    if args.joint_weights and len(args.joint_weights) != len(args.joint_priors):
        raise UsageError(f"--joint-weights: {len(args.joint_weights)} weights for {len(args.joint_priors)} joint "
                         "priors")
    parse_device(args.device, "benchmark_enhance.py", "--device")
    torch.set_num_threads(1)
    basis = nmf_basis(args) if args.ship_nmf or "nmf-vem" in args.methods else None
    if args.pairs:
        mixtures = read_pairs(args.pairs)
    else:
        mixtures = build_mixtures(args.corpus, args.split, args.noise, args.snrs, args.clips, args.clip_seconds,
                                  args.seed)
    audio_seconds = sum(len(m.noisy) for m in mixtures) / MODEL_RATE
    print(f"{len(mixtures)} mixtures, {audio_seconds:.1f} s of audio ({args.pairs or args.split})", file=sys.stderr)
    if args.export:
        export_pairs(mixtures, args.export)
        return 0
    baseline = [scores(m.noisy, m.clean) for m in mixtures]
    table, per_mixture = {}, {}
    for name in tqdm(args.methods, desc="methods", disable=args.no_progress, file=sys.stderr):
        out = run_method(name, mixtures, args, basis)
        if out is None:
            table[name] = {"skipped": "not installed (pip install -e '.[bench]')"}
            continue
        enhanced, seconds, config = out
        rows = baseline if name == "noisy" else [scores(y, m.clean) for y, m in zip(enhanced, mixtures, strict=True)]
        per_mixture[name] = rows
        row = {k: float(np.nanmean([r[k] for r in rows])) for k in METRICS}
        gains = paired_differences(rows, baseline, args.seed)
        row |= {f"{k}_gain": gains[k]["mean"] for k in METRICS} | {f"{k}_gain_ci": gains[k] for k in METRICS}
        row["rtf"] = seconds / audio_seconds
        by_snr = {}
        for snr in sorted({m.snr for m in mixtures if m.snr is not None}):
            pick = [i for i, m in enumerate(mixtures) if m.snr == snr]
            by_snr[f"{snr:+.0f} dB"] = float(np.mean([rows[i]["si_sdr"] - baseline[i]["si_sdr"] for i in pick]))
        row["si_sdr_gain_by_snr"] = by_snr
        if config is not None:
            row["config"] = config
        table[name] = row
    print(format_table(table))
    comparisons = compare(per_mixture, args.seed)
    if comparisons:
        print(format_comparisons(comparisons))
    if args.json:
        payload = {"split": None if args.pairs else args.split, "pairs": str(args.pairs) if args.pairs else None,
                   "snrs": args.snrs, "clips_per_snr": args.clips, "seed": args.seed, "device": args.device,
                   "audio_seconds": audio_seconds, "table": table,
                   "mixtures": [{"name": m.name, "snr": m.snr, "noise": m.noise} for m in mixtures],
                   "per_mixture": per_mixture, "differences": comparisons}
        atomic_write_text(args.json, json.dumps(payload, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
