"""Ray Tune search of the loss weights eta1 (M_B, ViT head) and eta2 (M_Y, NetVLAD head), tracked in MLflow.

    python tune/tune_loss_weights.py                                  # embedded default: 6 trials, ASHA, synthetic
    python tune/tune_loss_weights.py --config configs/tune_default.yaml search.num_samples=12 job.unified.epochs=6
    python tune/tune_loss_weights.py --resume runs/tune/classemo-tune-eta      # continue a killed search
    ray job submit --working-dir . -- python tune/tune_loss_weights.py

Each Tune trial runs the training job's driver (`jobs.train.run_training`): one TorchTrainer per trial, named
`<search>-<trial id>` so that a restored trial resumes from its own checkpoints, with `TuneReportCallback`
forwarding every epoch's metrics to Tune (Optuna TPE proposes eta1/eta2, ASHA stops weak trials early).
MLflow gets one parent run for the search and one child run per trial; the best trial's model is registered.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # `python tune/tune_loss_weights.py`: make `jobs`, `tune` importable from the repo root,
    # and take tune/ itself off the path (Ray hands the script's folder to every worker), so that tune/config.py,
    # search.py and report.py never pass for top-level modules named `config`, `search` or `report`.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(p for p in sys.path if Path(p or ".").resolve() != _here)]

import yaml  # noqa: E402

from classemo.config import ConfigError  # noqa: E402
from jobs import train as job_train  # noqa: E402
from tune.config import SearchError, load_tune_config  # noqa: E402
from tune.report import print_summary  # noqa: E402
from tune.search import SearchInterrupted, run_search  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """The command: exit status 2 for a search that cannot start, 3 for one interrupted (continue it with --resume)."""
    from classemo.data.dataset import DatasetError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="YAML with a 'search' section and a 'job' section (the training job's config)")
    p.add_argument("--resume", default="", help="experiment folder of an interrupted search to continue")
    p.add_argument("--csv", default="", help="also copy the trials table to this CSV file")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="search.key=value or job.section.key=value, e.g. search.num_samples=3")
    args = p.parse_args(argv)
    try:
        tc = load_tune_config(args.config, args.overrides)
        if args.print_config:
            print(yaml.safe_dump({"search": tc.search.model_dump(), "job": tc.job.to_dict()}, sort_keys=False))
            return 0
        out = run_search(tc, resume=args.resume)
    except (SearchError, ConfigError, job_train.JobError, DatasetError) as e:
        print(f"classemo tune: error: {e}", file=sys.stderr)
        return 2
    except SearchInterrupted as e:
        print(f"classemo tune: {e}", file=sys.stderr)
        return 3
    if args.csv:
        shutil.copyfile(out["csv"], args.csv)
    print_summary(out, out["metric"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
