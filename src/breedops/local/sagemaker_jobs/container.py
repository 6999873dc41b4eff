"""The training container's contract, on a plain machine: one folder per host stands in for /opt/ml.

SageMaker starts each host's container with `input/config/*.json`, the channels under
`input/data/<channel>`, `TRAINING_JOB_NAME` and the image's entry point. Here a host is a folder
and a process group, and the image's entry point is one of the two SageMaker runs:

- `ContainerEntrypoint`/`ContainerArguments` (what the SDK v3 `ModelTrainer` sends: bash runs
  the `sm_train.sh` of its `sm_drivers` channel), run as asked with the host folder in place of
  `/opt/ml`;
- otherwise the framework image's default, the SageMaker Training Toolkit (`sagemaker-training`,
  the package the framework containers run), in script mode: it downloads
  `sagemaker_submit_directory` and runs `sagemaker_program`. The toolkit reads its base
  folder from `SAGEMAKER_BASE_DIR`, so it needs no rewriting.

Hosts are named `algo-1..N` as on SageMaker; they all live on the loopback, so the drivers'
rendezvous address (`algo-1`, resolved by DNS on SageMaker) becomes 127.0.0.1 and a free port.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTAINER_BASE = "/opt/ml"
DRIVERS_CHANNEL = "sm_drivers"
LOOPBACK = "127.0.0.1"
TOOLKIT_COMMAND = (sys.executable, "-m", "sagemaker_training.cli.train")
# The SDK v3 drivers' rendezvous constants (container_drivers/scripts/environment.py).
DRIVER_MASTER_ADDR = 'SM_MASTER_ADDR = "algo-1"'
DRIVER_MASTER_PORT = "SM_MASTER_PORT = 7777"
# Variables of the emulator's own process that must not reach a job: a job runs as its role.
PRIVATE_PREFIXES = ("AWS_", "SM_", "SAGEMAKER_", "BREEDOPS_", "INITIAL_NO_AUTH", "MOTO_")
TEXT_SUFFIXES = (".py", ".sh", ".json", ".txt", ".env")


@dataclass(frozen=True)
class Host:
    """One instance of a job: its name (`algo-N`) and the folder that stands in for /opt/ml."""

    name: str
    base: Path

    @property
    def data(self) -> Path:
        return self.base / "input" / "data"

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def failure_file(self) -> Path:
        return self.output / "failure"

    def local(self, container_path: str) -> Path:
        """A container path (`/opt/ml/...`) on this host."""
        relative = Path(container_path).relative_to(CONTAINER_BASE)
        return self.base / relative

    def localize(self, text: str) -> str:
        return text.replace(CONTAINER_BASE, str(self.base))


def make_hosts(job_dir: Path, count: int) -> list[Host]:
    hosts = [Host(f"algo-{i + 1}", job_dir / f"algo-{i + 1}") for i in range(count)]
    for host in hosts:
        for folder in ("input/config", "input/data", "model", "output/data", "checkpoints"):
            (host.base / folder).mkdir(parents=True, exist_ok=True)
    return hosts


def write_config(host: Host, hosts: list[Host], job: dict[str, Any]) -> None:
    """`input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`, as SageMaker writes."""
    config = host.base / "input" / "config"
    channels = {
        c["ChannelName"]: {
            "TrainingInputMode": c.get("InputMode") or job["AlgorithmSpecification"].get(
                "TrainingInputMode", "File"),
            "S3DistributionType": c["DataSource"]["S3DataSource"].get(
                "S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": c.get("RecordWrapperType", "None"),
            **({"ContentType": c["ContentType"]} if c.get("ContentType") else {}),
        }
        for c in job.get("InputDataConfig") or []
    }
    resource = {
        "current_host": host.name,
        "current_instance_type": job["ResourceConfig"]["InstanceType"],
        "current_group_name": "homogeneousCluster",
        "hosts": [h.name for h in hosts],
        "instance_groups": [{"instance_group_name": "homogeneousCluster",
                             "instance_type": job["ResourceConfig"]["InstanceType"],
                             "hosts": [h.name for h in hosts]}],
        "network_interface_name": "lo",
    }
    files = {"hyperparameters.json": job.get("HyperParameters") or {},
             "inputdataconfig.json": channels, "resourceconfig.json": resource}
    for name, content in files.items():
        (config / name).write_text(json.dumps(content, indent=2))


def localize_drivers(host: Host, master_port: int) -> None:
    """Point the SDK's driver channel at this host's folder and the loopback rendezvous."""
    drivers = host.data / DRIVERS_CHANNEL
    if not drivers.is_dir():
        return
    for path in drivers.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8")
            localized = host.localize(text)
            localized = localized.replace(DRIVER_MASTER_ADDR, f'SM_MASTER_ADDR = "{LOOPBACK}"')
            localized = localized.replace(DRIVER_MASTER_PORT, f"SM_MASTER_PORT = {master_port}")
            if localized != text:
                path.write_text(localized, encoding="utf-8")


def command(host: Host, job: dict[str, Any]) -> list[str]:
    """What the container runs: the request's entry point, else the training toolkit."""
    spec = job["AlgorithmSpecification"]
    entrypoint = spec.get("ContainerEntrypoint")
    if entrypoint:
        arguments = spec.get("ContainerArguments") or []
        return [host.localize(arg) for arg in [*entrypoint, *arguments]]
    return list(TOOLKIT_COMMAND)


def environment(host: Host, hosts: list[Host], job: dict[str, Any], credentials: dict[str, str],
                endpoint_url: str, region: str, master_port: int,
                threads: int) -> dict[str, str]:
    """The container's environment: the job's role credentials, never the emulator's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    bin_dir = str(Path(sys.executable).parent)  # python3, pip and torchrun of this install
    env.update({
        "PATH": os.pathsep.join([bin_dir, env.get("PATH", "/usr/bin:/bin")]),
        "TRAINING_JOB_NAME": job["TrainingJobName"],
        "TRAINING_JOB_ARN": job["TrainingJobArn"],
        "SAGEMAKER_BASE_DIR": str(host.base),
        # The toolkit waits for every host's DNS name; its local mode skips that (loopback hosts).
        "SM_STUDIO_LOCAL_MODE": "true",
        "MASTER_ADDR": LOOPBACK,
        "MASTER_PORT": str(master_port),
        "OMP_NUM_THREADS": str(threads),
        # A host's cores are shared here (the emulator, hosting, other jobs), unlike an
        # instance's: OpenMP's spinning waits then cost a 2-thread resnet18 step 3-7x (measured,
        # 2 cores); passive waits keep it faster than one thread. A job's Environment may override.
        "OMP_WAIT_POLICY": "PASSIVE",
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PYTHONUNBUFFERED": "1",
    })
    for key, value in (job.get("Environment") or {}).items():
        env[key] = value
    return env
