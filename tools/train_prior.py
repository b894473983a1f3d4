#!/usr/bin/env python
"""Train a DVAE motion prior (SRNN, VRNN or DKF) on synthetic and real box trajectories.

    python tools/train_prior.py --config configs/prior_srnn.yaml
    python tools/train_prior.py --config configs/prior_srnn.yaml --set train.epochs=5 --out runs/quick
    python tools/train_prior.py --config configs/prior_srnn.yaml --calibrate srnn_mot --out runs/recal

``--calibrate CHECKPOINT`` skips training: it re-runs the config's post-training calibrations (velocity blend,
smooth-track gate, variance) on a trained motion prior's weights, which must come from the same model config
and training windows.

Writes the best checkpoint, ``history.json`` and ``loss_curve.png`` under ``output.dir`` (``runs/...``); with
``--ship NAME`` also copies the checkpoint and the config to ``data/priors/NAME.{pt,yaml}``. The objective and
the schedules (KL warm-up, scheduled sampling, early stopping) are described in ``mixdvae/dvae/training.py``.
"""

from __future__ import annotations

import shutil
import sys

import yaml

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.config import load_yaml_mapping, parse_override
from mixdvae.dvae import PRIORS_DIR
from mixdvae.dvae.training import calibrate_prior, merge_config, resolve_path, train_prior
from mixdvae.mot import atomic_write_text


@guarded
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--config", required=True, help="training YAML, e.g. configs/prior_srnn.yaml")
    parser.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                        help="override a config entry, e.g. train.epochs=5 (repeatable)")
    parser.add_argument("--out", help="output folder (overrides output.dir)")
    parser.add_argument("--seed", type=int, help="overrides seed")
    parser.add_argument("--ship", metavar="NAME", help="also copy the result to data/priors/NAME.pt and NAME.yaml")
    parser.add_argument("--calibrate", metavar="CHECKPOINT",
                        help="no training: re-run the calibrations on this trained motion prior (name or path)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = parser.parse_args(argv)

    config = load_yaml_mapping(args.config)
    for override in args.set:
        config = merge_config(config, override)
    if args.out:
        config = merge_config(config, {"output": {"dir": args.out, "checkpoint": None}})
    if args.seed is not None:
        config["seed"] = args.seed
    if args.calibrate:
        result = calibrate_prior(config, args.calibrate)
    else:
        result = train_prior(config, progress=not args.no_progress)
    if args.ship:
        PRIORS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.checkpoint, PRIORS_DIR / f"{args.ship}.pt")
        shipped = merge_config(config, {"output": {"checkpoint": None}})
        header = (f"# Config used to train data/priors/{args.ship}.pt "
                  f"(python tools/train_prior.py --config {args.config}")
        header += "".join(f" --set {k}" for k in _flat(args.set))
        header += (f" --calibrate {args.calibrate}" if args.calibrate else "") + f" --ship {args.ship})\n"
        atomic_write_text(PRIORS_DIR / f"{args.ship}.yaml", header + yaml.safe_dump(shipped, sort_keys=False))
        size_mb = resolve_path(result.checkpoint).stat().st_size / 1e6
        print(f"shipped {PRIORS_DIR / (args.ship + '.pt')} ({size_mb:.2f} MB)")
    return 0


def _flat(overrides: list[dict]) -> list[str]:
    out = []
    for override in overrides:
        def walk(node, prefix):
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(value, prefix + key + ".")
                else:
                    out.append(f"{prefix}{key}={value}")
        walk(override, "")
    return out


if __name__ == "__main__":
    sys.exit(main())
