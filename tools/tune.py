#!/usr/bin/env python
"""Random search over tracker parameters, with a leave-one-sequence-out check of the chosen settings.

Each trial overrides the tracker's default configuration (``configs/<tracker>.yaml``) with values drawn from the
search space (``--space``: a YAML ``{parameter: [values]}``), tracks every sequence of every ``--data-roots``
folder and scores them with TrackEval. A trial's objective is the mean over data sets of (HOTA + IDF1) / 2 on
the combined sequences; the first trial is always the default configuration itself.

The leave-one-sequence-out (LOSO) check answers "does the procedure hold up on a sequence nobody tuned on?":
for each sequence S of the first data set, the trial is chosen with S left out (mean (HOTA + IDF1) / 2 over
the other sequences of that data set, averaged with the other data sets' combined objective); S is then
scored with it. The held-out results of all sequences are scored together as one combined row.

    python tools/tune.py --tracker mixdvae --trials 12 --json tune_mixdvae.json
    python tools/tune.py --tracker vkf --trials 40 --space configs/tune_vem.yaml --seed 1
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mixdvae.evaluation import COMBINED, format_table  # noqa: E402
from mixdvae.runner import DEFAULT_DATA_ROOT, EXIT_CODES_HELP, EXIT_OK, MOT15_ROOT, REPO_ROOT, guarded  # noqa: E402
from mixdvae.runner import default_config, load_sequences, run_tracker, score_results, write_json  # noqa: E402
from trackers import TRACKERS, make_tracker  # noqa: E402
from trackers.base import load_config  # noqa: E402

COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP
    )
    parser.add_argument("--tracker", default="mixdvae", choices=sorted(TRACKERS),
                        help="registered tracker to tune (default: %(default)s)")
    parser.add_argument("--space", type=Path, default=REPO_ROOT / "configs" / "tune_vem.yaml",
                        help="YAML {parameter: [candidate values]} (default: configs/tune_vem.yaml)")
    parser.add_argument("--trials", type=int, default=12,
                        help="trials, the default configuration included (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws (default: %(default)s)")
    parser.add_argument("--data-roots", nargs="+", type=Path, default=[MOT15_ROOT, DEFAULT_DATA_ROOT],
                        help="folders of sequence folders with ground truth; the first one gets the LOSO check "
                             "(default: ../shared/data/MOT15/train and the synthetic benchmark)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write every trial ({overrides, scores}) and the LOSO check as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def draw_trials(space: dict, trials: int, seed: int) -> list[dict]:
    """``trials`` override dicts: the empty one (the defaults), then distinct random draws from ``space``."""
    rng = random.Random(seed)
    drawn, seen = [{}], set()
    for _ in range(100 * trials):
        if len(drawn) >= trials:
            break
        over = {name: rng.choice(values) for name, values in space.items()}
        key = tuple(sorted(over.items()))
        if key not in seen:
            seen.add(key)
            drawn.append(over)
    return drawn


def load_space(path: Path) -> dict:
    space = yaml.safe_load(Path(path).read_text())
    if not isinstance(space, dict) or not all(isinstance(v, list) and v for v in space.values()):
        raise ValueError(f"{path}: the search space must map each parameter to a non-empty list of values")
    return space


def objective(scores: dict) -> float:
    return (scores["HOTA"] + scores["IDF1"]) / 2


def loso(trials: list[dict], first: str, data_sets: dict, tmp: Path) -> dict:
    """For each sequence of data set ``first``: the trial chosen without it, and its scores there; plus the
    combined score of all those held-out results."""
    names = [name for name in trials[0]["scores"][first] if name != COMBINED]
    others = [key for key in data_sets if key != first]
    chosen, held_out = {}, {}
    for name in names:
        def fitness(trial, name=name):
            rest = np.mean([objective(trial["scores"][first][n]) for n in names if n != name])
            return np.mean([rest] + [objective(trial["scores"][key][COMBINED]) for key in others])

        best = max(range(len(trials)), key=lambda i: fitness(trials[i]))
        chosen[name] = best
        held_out[name] = trials[best]["results"][first][name]
    scores = score_results(data_sets[first], held_out, tmp / "loso")
    return {"chosen_trial": chosen, "scores": scores}


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    config_path = default_config(args.tracker)
    base = load_config(config_path) if config_path else {}
    data_sets = {str(root): root for root in args.data_roots}
    sequences = {key: load_sequences(root, ["all"]) for key, root in data_sets.items()}
    first = str(args.data_roots[0])
    trials = [{"overrides": over} for over in draw_trials(space, args.trials, args.seed)]
    with tempfile.TemporaryDirectory(prefix="mixdvae_tune_") as tmp:
        tmp = Path(tmp)
        for index, trial in enumerate(tqdm(trials, desc="trials", disable=args.no_progress)):
            config = {**base, **trial["overrides"]}
            trial["results"], trial["scores"] = {}, {}
            for key, root in data_sets.items():
                trial["results"][key] = {seq.name: run_tracker(make_tracker(args.tracker, config), seq).results
                                         for seq in sequences[key]}
                trial["scores"][key] = score_results(root, trial["results"][key], tmp / str(index) / Path(key).name)
            trial["objective"] = float(np.mean([objective(s[COMBINED]) for s in trial["scores"].values()]))
            tqdm.write(f"trial {index}: objective {trial['objective']:.2f} {trial['overrides'] or '(defaults)'}")
        check = loso(trials, first, data_sets, tmp) if len(sequences[first]) > 1 else None
    ranked = sorted(range(len(trials)), key=lambda i: -trials[i]["objective"])
    rows = {f"trial {i} ({trials[i]['objective']:.2f})": trials[i]["scores"][first][COMBINED] for i in ranked[:5]}
    print(f"best trials (objective), scores on {first}:")
    print(format_table(rows, "trial", COLUMNS, width=24))
    print(f"best trial {ranked[0]}: {trials[ranked[0]]['overrides'] or '(the defaults)'}")
    if check:
        labels = {name: f"{name} (trial {i})" for name, i in check["chosen_trial"].items()}
        held = {labels.get(name, name): s for name, s in check["scores"].items()}
        print("\nleave-one-sequence-out: each sequence scored with the trial chosen without it")
        print(format_table(held, "sequence (chosen trial)", COLUMNS, width=32))
    if args.json:
        for trial in trials:
            trial.pop("results")
        write_json(args.json, {"tracker": args.tracker, "trials": trials, "loso": check})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
