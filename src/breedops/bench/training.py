"""Training speed: images per second per architecture, one process against two DDP processes,
and the wall time of a small local tuning job.

Every figure comes from running the real entry point (`python -m breedops.training.train`, under
torchrun for DDP) on the digits dataset, so it measures what a job does, data loading included.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from breedops.errors import BreedopsError

logger = logging.getLogger(__name__)

TRAIN_MODULE = "breedops.training.train"


class TrainingBenchError(BreedopsError):
    """A benchmark training run failed."""


def prepare_digits(out_dir: Path) -> Path:
    """The digits ImageFolder the project renders from scikit-learn's bundled data."""
    from breedops.data.prepare import prepare

    return prepare("digits", out_dir)


def run_training(data_dir: Path, work_dir: Path, arch: str, processes: int = 1,
                 threads_per_process: int | None = None, epochs: int = 1,
                 batch_size: int = 32, image_size: int = 32) -> dict[str, Any]:
    """One training run; returns its images/s (from metrics.json) and wall time."""
    cores = os.cpu_count() or 1
    threads = threads_per_process or max(1, cores // processes)
    model_dir = work_dir / f"{arch}-{processes}p-model"
    output_dir = work_dir / f"{arch}-{processes}p-output"
    train_args = ["--data-dir", str(data_dir), "--model-dir", str(model_dir),
                  "--output-data-dir", str(output_dir), "--arch", arch,
                  "--epochs", str(epochs), "--batch-size", str(batch_size),
                  "--image-size", str(image_size), "--threads", str(threads)]
    if processes == 1:
        command = [sys.executable, "-m", TRAIN_MODULE, *train_args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", "-m", TRAIN_MODULE, *train_args]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False,
                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall_s = time.perf_counter() - started
    if completed.returncode != 0:
        tail = (completed.stdout + completed.stderr)[-2000:]
        raise TrainingBenchError(f"training {arch} with {processes} process(es) failed "
                                 f"(exit {completed.returncode}):\n{tail}")
    metrics = json.loads((output_dir / "metrics.json").read_text())
    return {"arch": arch, "processes": processes, "threads_per_process": threads,
            "epochs": epochs, "batch_size": batch_size, "image_size": image_size,
            "images_per_second": round(float(metrics["images_per_second"]), 1),
            "wall_s": round(wall_s, 1),
            "test_accuracy": metrics.get("test", {}).get("test_accuracy")}


def tuning_wall_time(data_dir: Path, max_jobs: int = 2, max_parallel_jobs: int = 2,
                     epochs: int = 1) -> dict[str, Any]:
    """A tuning job through the SDK backend against a private emulator, which runs it.

    It calls the backend directly rather than `workflow.tune`, which would record the
    artifact into the Terraform environment: a benchmark must not change a deployment.
    """
    import boto3

    from breedops import hyperparameters
    from breedops.bench.serving import local_services
    from breedops.data.upload import upload_dataset
    from breedops.jobs.sagemaker_backend import SageMakerBackend
    from breedops.jobs.spec import HyperParameters, TrainingRequest, TuningRequest

    with tempfile.TemporaryDirectory(prefix="breedops-bench-tune-") as tmp, \
            local_services(Path(tmp)):
        saved_state = os.environ.get("BREEDOPS_STATE_DIR")
        os.environ["BREEDOPS_STATE_DIR"] = str(Path(tmp) / "state")
        try:
            bucket = "breedops-bench-tuning"
            boto3.client("s3").create_bucket(Bucket=bucket)
            upload_dataset(data_dir, bucket, "digits")
            training = TrainingRequest(
                bucket=bucket, role_arn=_execution_role(),
                dataset="digits", hyperparameters=HyperParameters(epochs=epochs),
                instance_type="ml.m5.large", instance_count=1, use_spot=False,
                max_run_s=1800, max_wait_s=1800)
            started = time.perf_counter()
            # The default search space trains 4-6 epochs a trial: the bench fixes the epochs.
            result = SageMakerBackend().tune(TuningRequest(
                training=training, ranges=hyperparameters.fixed(
                    hyperparameters.preset(hyperparameters.DIGITS).search_ranges(),
                    epochs=epochs),
                max_jobs=max_jobs, max_parallel_jobs=max_parallel_jobs))
            wall_s = time.perf_counter() - started
        finally:
            if saved_state is None:
                os.environ.pop("BREEDOPS_STATE_DIR", None)
            else:
                os.environ["BREEDOPS_STATE_DIR"] = saved_state
    return {"max_jobs": max_jobs, "max_parallel_jobs": max_parallel_jobs, "epochs": epochs,
            "wall_s": round(wall_s, 1), "best_valid_loss": round(result.objective_value, 4)}


def _execution_role() -> str:
    """A throwaway execution role in the bench's private emulator (SageMaker may assume it)."""
    import json

    import boto3

    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    iam = boto3.client("iam")
    arn = iam.create_role(RoleName="breedops-bench-execution",
                          AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    # Private and short-lived: the bench measures jobs, not policies.
    iam.put_role_policy(RoleName="breedops-bench-execution", PolicyName="bench",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return arn
