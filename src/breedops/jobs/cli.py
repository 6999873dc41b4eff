"""`breedops tune` and `breedops train`: SageMaker jobs, on AWS (--env aws) or the emulator."""

from __future__ import annotations

import argparse
import dataclasses

from breedops import hyperparameters
from breedops.errors import ConfigurationError
from breedops.local.env_file import use_emulator_when_local
from breedops.terraform.outputs import output_or_flag


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="local", choices=["local", "aws"],
                        help="local: the emulator, which runs the jobs; aws: SageMaker (default: local)")
    parser.add_argument("--bucket", help="data bucket (default: Terraform output bucket_name)")
    parser.add_argument("--role-arn", help="SageMaker execution role "
                        "(default: Terraform output sagemaker_execution_role_arn)")
    parser.add_argument("--dataset", default="digits", help="dataset under data/ (default: digits)")
    parser.add_argument("--instance-type", default=None, help="SageMaker instance type")
    parser.add_argument("--instance-count", type=int, default=1, help="instances (DDP when > 1)")
    parser.add_argument("--spot", type=hyperparameters.boolean, default=True,
                        help="managed spot (default: true)")
    parser.add_argument("--max-run-s", type=int, default=3600, help="max run seconds")
    parser.add_argument("--max-wait-s", type=int, default=7200,
                        help="max wait seconds, spot waits included (> max run)")
    parser.add_argument("--preset", choices=hyperparameters.PRESETS, default=None,
                        help="hyperparameter defaults and ranges (default: the dataset's own "
                             "for digits and dog-images, digits for a folder)")
    hp = parser.add_argument_group("hyperparameters (defaults: the preset's)")
    hyperparameters.add_arguments(hp, defaults=None)


def preset_of(args: argparse.Namespace) -> str:
    """The preset asked for, else the dataset's."""
    return args.preset or hyperparameters.preset_for_dataset(args.dataset)


def register(subparsers: argparse._SubParsersAction) -> None:
    tune = subparsers.add_parser("tune", help="hyperparameter tuning job (Bayesian, valid_loss)")
    _common(tune)
    tune.add_argument("--max-jobs", type=int, default=None,
                      help="trials (default: the preset's, 2 for digits, 4 for dog-images)")
    tune.add_argument("--max-parallel-jobs", type=int, default=None,
                      help="trials at a time (default: the preset's, 2, or --max-jobs if fewer)")
    tune.set_defaults(func=tune_command)

    train = subparsers.add_parser("train", help="training job; records its artifact")
    _common(train)
    train.add_argument("--hyperparameters-from-tuning", metavar="TUNING_JOB", default=None,
                       help="start from this tuning job's best hyperparameters")
    train.set_defaults(func=train_command)


def _request(args: argparse.Namespace, base=None):
    from breedops.jobs.spec import DEFAULT_INSTANCE_TYPE, HyperParameters, TrainingRequest

    base = base or HyperParameters.of_preset(preset_of(args))
    overrides = {hp.name: getattr(args, hp.name) for hp in hyperparameters.SCHEMA
                 if getattr(args, hp.name) is not None}
    local = args.env == "local"
    return TrainingRequest(
        bucket=output_or_flag(args.bucket, args.env, "bucket_name", "--bucket"),
        role_arn=output_or_flag(args.role_arn, args.env, "sagemaker_execution_role_arn",
                                "--role-arn"),
        dataset=args.dataset,
        hyperparameters=dataclasses.replace(base, **overrides),
        instance_type=args.instance_type or ("ml.m5.large" if local else DEFAULT_INSTANCE_TYPE),
        instance_count=args.instance_count, use_spot=args.spot,
        max_run_s=args.max_run_s, max_wait_s=args.max_wait_s,
    )


def _tuning_request(args: argparse.Namespace):
    from breedops.jobs.spec import TuningRequest

    preset = hyperparameters.preset(preset_of(args))
    try:
        trials, parallel_trials = preset.budget(args.max_jobs, args.max_parallel_jobs)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    return TuningRequest(training=_request(args), ranges=preset.search_ranges(),
                         max_jobs=trials, max_parallel_jobs=parallel_trials)


def tune_command(args: argparse.Namespace) -> int:
    from breedops.jobs import workflow

    use_emulator_when_local(args.env)
    request = _tuning_request(args)
    backend = workflow.get_backend(args.env)
    result = workflow.tune(args.env, backend, request)
    print(f"tuning job {result.tuning_job_name}: best {result.best.job_name} "
          f"(valid_loss={result.objective_value:.4f}) "
          f"{result.best.hyperparameters.as_strings()}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from breedops.jobs import workflow

    use_emulator_when_local(args.env)
    request = _request(args)  # bad flags fail here, before any client is made
    backend = workflow.get_backend(args.env)
    if args.hyperparameters_from_tuning:
        base = workflow.best_hyperparameters_of(backend, args.hyperparameters_from_tuning)
        request = _request(args, base)
    result = workflow.train(args.env, backend, request,
                            tuning_job_name=args.hyperparameters_from_tuning)
    metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items())
                       if k.startswith("test_"))
    print(f"training job {result.job_name}: {result.model_data_url} {metrics}")
    return 0
