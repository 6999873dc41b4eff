"""`breedops data prepare|upload`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare datasets and sync them to S3")
    commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    prepare = commands.add_parser(
        "prepare", help="write an ImageFolder train/valid/test tree")
    prepare.add_argument("--dataset", default="digits",
                         help="digits (default), dog-images, or a folder in that layout")
    prepare.add_argument("--out", type=Path, default=None,
                         help="output folder (default: <state dir>/data/<dataset>)")
    prepare.set_defaults(func=prepare_command)

    upload = commands.add_parser("upload", help="sync a prepared dataset to the data bucket")
    upload.add_argument("--dataset", default="digits", help="name under data/ in the bucket")
    upload.add_argument("--dataset-dir", type=Path, default=None,
                        help="the prepared folder (default: <state dir>/data/<dataset>)")
    upload.add_argument("--bucket", default=None,
                        help="bucket (default: the Terraform output bucket_name)")
    upload.add_argument("--env", default="local", help="Terraform env for defaults")
    upload.add_argument("--workers", type=int, default=8, help="parallel uploads")
    upload.set_defaults(func=upload_command)


def prepare_command(args: argparse.Namespace) -> int:
    from breedops.data.prepare import dataset_name, prepare
    from breedops.settings import state_dir

    out = args.out or state_dir() / "data" / dataset_name(args.dataset)
    root = prepare(args.dataset, out)
    print(root)
    return 0


def upload_command(args: argparse.Namespace) -> int:
    from breedops.data.upload import upload_dataset
    from breedops.local.env_file import use_emulator_when_local
    from breedops.settings import state_dir
    from breedops.terraform.outputs import output_or_flag

    use_emulator_when_local(args.env)
    bucket = output_or_flag(args.bucket, args.env, "bucket_name", "--bucket")
    dataset_dir = args.dataset_dir or state_dir() / "data" / args.dataset
    uploaded, skipped = upload_dataset(dataset_dir, bucket, args.dataset, workers=args.workers)
    print(f"s3://{bucket}/data/{args.dataset}/: {uploaded} uploaded, {skipped} unchanged")
    return 0
