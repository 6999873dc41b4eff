"""`breedops pipeline apply`: what `make apply` runs."""

from __future__ import annotations

import argparse

from breedops.hyperparameters import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    pipeline = subparsers.add_parser("pipeline", help="the whole pipeline (make apply)")
    commands = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)
    apply = commands.add_parser(
        "apply", help="base, data, tuning, training, serving and a smoke test; "
                      "unchanged stages are skipped")
    apply.add_argument("--env", default="local", choices=["local", "aws"],
                       help="local emulator (default) or a real account")
    apply.add_argument("--dataset", default="digits",
                       help="digits (default), dog-images, or a folder in that layout")
    apply.add_argument("--trials", type=int, default=None,
                       help="tuning trials (default: the preset's, 2 for digits, 4 for dog-images)")
    apply.add_argument("--parallel-trials", type=int, default=None,
                       help="trials at a time (default: the preset's, 2, or --trials if fewer)")
    apply.add_argument("--epochs", type=int, default=None,
                       help="fix the epochs of every job (default: tuned within the ranges)")
    apply.add_argument("--preset", default=None, choices=PRESETS,
                       help="hyperparameter defaults and ranges (default: the dataset's own for "
                            "digits and dog-images, digits for a folder)")
    apply.add_argument("--weights", default=None, metavar="FILE",
                       help="pretrained weights (a torchvision state_dict file) for the jobs, "
                            "instead of their download")
    apply.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                       help="re-run every stage even when its inputs did not change")
    apply.set_defaults(func=apply_command)


def apply_command(args: argparse.Namespace) -> int:
    from breedops.pipeline.apply import PipelineOptions, apply

    apply(PipelineOptions(env=args.env, dataset=args.dataset, trials=args.trials,
                          parallel_trials=args.parallel_trials, epochs=args.epochs,
                          force=args.force, preset=args.preset, weights=args.weights))
    return 0
