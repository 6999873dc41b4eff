"""SageMaker training and tuning jobs, executed by the emulator, driven through plain boto3.

The training code is a few lines of Python, uploaded as `sourcedir.tar.gz` and run by the
SageMaker Training Toolkit in script mode (`sagemaker_program`/`sagemaker_submit_directory`),
as a framework image runs it; one job runs a `ContainerEntrypoint` instead. Scripts report what
they saw as `@<key> <json>` lines, read back from the job's CloudWatch log stream.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tarfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import psutil
import pytest
from botocore.exceptions import ClientError
from iam_roles import create_execution_role

from breedops.local import emulator

pytestmark = pytest.mark.emulator

T = TypeVar("T")

ACCOUNT = "123456789012"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
JOB_TIMEOUT = 60.0
STOP_GRACE_SECONDS = 2  # for the emulators the tests start themselves
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
METRICS = [{"Name": "loss", "Regex": r"loss=([-+0-9.eE]+);"},
           {"Name": "accuracy", "Regex": r"accuracy=([-+0-9.eE]+);"}]
OBJECTIVE = [{"Name": "objective", "Regex": r"objective=([-+0-9.eE]+);"}]

# -- training scripts ---------------------------------------------------------------------------

# Reports what reached it (argv, hyperparameters.json, credentials), logs three epochs of
# metrics and writes a model file and an output file.
COMPLETING_SCRIPT = """
import json, os, sys
import boto3

def report(key, value):
    print("@" + key, json.dumps(value), flush=True)

base = os.environ["SAGEMAKER_BASE_DIR"]
report("argv", sys.argv[1:])
with open(os.path.join(base, "input", "config", "hyperparameters.json")) as f:
    report("hyperparameters", json.load(f))
report("files", sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])))
report("access_key", os.environ["AWS_ACCESS_KEY_ID"])
report("session_token", os.environ.get("AWS_SESSION_TOKEN"))
report("identity", boto3.client("sts").get_caller_identity()["Arn"])
report("openmp", [os.environ.get("OMP_NUM_THREADS"), os.environ.get("OMP_WAIT_POLICY")])
for epoch in range(3):
    print(f"epoch={epoch}; loss={1.0 / (epoch + 1):.4f}; accuracy={0.5 + 0.1 * epoch:.2f};")
with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.txt"), "w") as f:
    f.write("trained weights")
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as f:
    f.write("a report")
"""

# Lists the files of each channel on this host.
LISTING_SCRIPT = """
import json, os
channels = json.loads(os.environ["SM_CHANNELS"])
files = {c: sorted(os.listdir(os.environ["SM_CHANNEL_" + c.upper()])) for c in channels}
print("@host", json.dumps(os.environ["SM_CURRENT_HOST"]), flush=True)
print("@files", json.dumps(files), flush=True)
"""

FAILING_SCRIPT = """
import os
with open(os.path.join(os.environ["SM_MODEL_DIR"], "partial.txt"), "w") as f:
    f.write("half a model")
print("epoch=0; loss=2.5;", flush=True)
raise ValueError("the learning rate exploded")
"""

# Prints the checkpoints it found; with `--mode loop`, checkpoints every step until SIGTERM,
# then writes a final checkpoint and exits 143, as a well-behaved training script does.
CHECKPOINT_SCRIPT = """
import argparse, json, os, signal, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("--mode", default="resume")
args, _ = parser.parse_known_args()
folder = os.path.join(os.environ["SAGEMAKER_BASE_DIR"], "checkpoints")
os.makedirs(folder, exist_ok=True)
found = {}
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name)) as f:
        found[name] = f.read()
print("@restored", json.dumps(found), flush=True)

def save(name, text):  # atomically, through a dot file that the checkpoint sync skips
    with open(os.path.join(folder, "." + name), "w") as f:
        f.write(text)
    os.replace(os.path.join(folder, "." + name), os.path.join(folder, name))

def on_sigterm(signum, frame):
    with open(os.path.join(folder, "step.txt")) as f:
        save("final.txt", f"stopped after step {f.read()}")
    sys.exit(143)

signal.signal(signal.SIGTERM, on_sigterm)
for step in range(1, 601) if args.mode == "loop" else ():
    save("step.txt", str(step))
    print(f"step {step}", flush=True)
    time.sleep(0.1)
"""

# Runs, silent, until it is killed: a job busy in a long step (a bound keeps a leak short).
SILENT_SCRIPT = """
import json, os, time
print("@pgid", json.dumps(os.getpgid(0)), flush=True)
time.sleep(60)
"""

# Ignores SIGTERM: StopTrainingJob must SIGKILL it after the grace period.
STUBBORN_SCRIPT = """
import json, os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("@pgid", json.dumps(os.getpgid(0)), flush=True)
time.sleep(60)
"""

# Runs until it is killed (a bound keeps a leak from outliving the test run for long).
SLEEPING_SCRIPT = """
import time
for tick in range(600):
    print(f"tick {tick}", flush=True)
    time.sleep(0.1)
"""

# Run by bash through ContainerEntrypoint: argv[1] is /opt/ml/model as the request wrote it.
ENTRYPOINT_SCRIPT = """
import json, os, sys
print("@argv", json.dumps(sys.argv), flush=True)
print("@script", json.dumps(os.path.abspath(__file__)), flush=True)
with open(os.path.join(sys.argv[1], "entrypoint.txt"), "w") as f:
    f.write("written through the entry point")
"""

# The objective of a tuning trial: a function of its hyperparameters, printed as a metric. The
# toolkit passes a one-letter hyperparameter as `-x 0.5`, a longer one as `--color red`.
TUNING_SCRIPT = """
import argparse, time
parser = argparse.ArgumentParser()
parser.add_argument("-x", type=float, default=0.3)
parser.add_argument("-n", type=int, default=0)
parser.add_argument("--color", default="")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--fail", default="")
args, _ = parser.parse_known_args()
time.sleep(args.sleep)
if args.fail:
    raise RuntimeError("this trial fails on purpose")
score = {"red": 1.0, "green": 3.0, "blue": 2.0}.get(args.color, 0.0)
print(f"objective={(args.x - 0.3) ** 2 + args.n + score:.6f};", flush=True)
"""


# -- helpers ------------------------------------------------------------------------------------

def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = JOB_TIMEOUT,
             interval: float = 0.25) -> T:
    """Call `probe` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_training(sm: Any, name: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        described = sm.describe_training_job(TrainingJobName=name)
        return described if described["TrainingJobStatus"] in TERMINAL else None

    return wait_for(ended, f"training job {name} to end", timeout)


def wait_for_tuning(sm: Any, name: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        return described if described["HyperParameterTuningJobStatus"] in TERMINAL else None

    return wait_for(ended, f"tuning job {name} to end", timeout)


def log_messages(logs: Any, job: str, host: str = "algo-1") -> list[str]:
    """Every line a host of the job logged, from its stream `<job>/<host>-<epoch>`."""
    try:
        streams = logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job}/{host}-")["logStreams"]
    except logs.exceptions.ResourceNotFoundException:  # no job has logged anything yet
        return []
    if not streams:
        return []
    messages: list[str] = []
    paginator = logs.get_paginator("filter_log_events")
    for page in paginator.paginate(logGroupName=LOG_GROUP,
                                   logStreamNames=[s["logStreamName"] for s in streams]):
        messages += [event["message"] for event in page["events"]]
    return messages


def reports(messages: list[str]) -> dict[str, Any]:
    """The scripts' `@key <json>` lines (the last one of each key)."""
    found = {}
    for message in messages:
        match = re.match(r"^@(\w+) (.*)$", message)
        if match:
            found[match.group(1)] = json.loads(match.group(2))
    return found


def tar_members(s3: Any, bucket: str, key: str) -> dict[str, bytes]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


@dataclass
class Account:
    """A bucket, an execution role SageMaker may assume, and clients of one emulator."""

    bucket: str
    role_name: str
    role_arn: str
    s3: Any
    sm: Any
    logs: Any
    iam: Any

    @classmethod
    def create(cls) -> Account:
        s3, sm, logs, iam = (boto3.client(n) for n in ("s3", "sagemaker", "logs", "iam"))
        bucket = unique("sm-jobs")
        s3.create_bucket(Bucket=bucket)
        role_name = unique("sm-exec")
        role_arn = create_execution_role(iam, role_name, bucket)
        for index in range(4):
            s3.put_object(Bucket=bucket, Key=f"data/train/sample-{index}.txt", Body=b"x")
        return cls(bucket, role_name, role_arn, s3, sm, logs, iam)

    def source_dir(self, script: str) -> str:
        """`sourcedir.tar.gz` holding `train.py`, as the SDK uploads it; its S3 URI."""
        code = textwrap.dedent(script).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("train.py")
            info.size = len(code)
            tar.addfile(info, io.BytesIO(code))
        key = f"code/{uuid.uuid4().hex[:8]}/sourcedir.tar.gz"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())
        return f"s3://{self.bucket}/{key}"

    def channel(self, name: str, prefix: str, distribution: str = "FullyReplicated") -> dict:
        return {"ChannelName": name, "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{self.bucket}/{prefix}",
            "S3DataDistributionType": distribution}}}

    def training_request(self, name: str, script: str, hyperparameters: dict | None = None,
                         channels: list[dict] | None = None, instance_count: int = 1,
                         max_runtime: int = 120, **extra: Any) -> dict[str, Any]:
        """A script-mode CreateTrainingJob request: the toolkit runs `train.py`."""
        return {
            "TrainingJobName": name,
            "RoleArn": self.role_arn,
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                       "MetricDefinitions": METRICS},
            "HyperParameters": {"sagemaker_program": "train.py",
                                "sagemaker_submit_directory": self.source_dir(script),
                                **(hyperparameters or {})},
            "InputDataConfig": channels if channels is not None else [
                self.channel("train", "data/train/")],
            "OutputDataConfig": {"S3OutputPath": f"s3://{self.bucket}/jobs"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": instance_count,
                               "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
            **extra,
        }

    def train(self, name: str, script: str, **kwargs: Any) -> str:
        self.sm.create_training_job(**self.training_request(name, script, **kwargs))
        return name

    def tuning_definition(self, script: str, static: dict | None = None) -> dict[str, Any]:
        return {
            "StaticHyperParameters": {"sagemaker_program": "train.py",
                                      "sagemaker_submit_directory": self.source_dir(script),
                                      **(static or {})},
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                       "MetricDefinitions": OBJECTIVE},
            "RoleArn": self.role_arn,
            "OutputDataConfig": {"S3OutputPath": f"s3://{self.bucket}/tuning"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                               "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        }

    def tune(self, name: str, config: dict[str, Any], static: dict | None = None) -> str:
        self.sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, HyperParameterTuningJobConfig=config,
            TrainingJobDefinition=self.tuning_definition(TUNING_SCRIPT, static))
        return name

    def trials(self, tuning_job: str, **kwargs: Any) -> list[dict[str, Any]]:
        return self.sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job, **kwargs)["TrainingJobSummaries"]


def tuning_config(strategy: str = "Random", objective: str = "Minimize", jobs: int = 3,
                  parallel: int = 2, ranges: dict | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": objective, "MetricName": "objective"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": ranges or {
            "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1",
                                           "ScalingType": "Linear"}],
            "IntegerParameterRanges": [{"Name": "n", "MinValue": "1", "MaxValue": "3",
                                        "ScalingType": "Linear"}]},
        "TrainingJobEarlyStoppingType": "Off",
        **extra,
    }


def live_group_members(pgid: int) -> list[psutil.Process]:
    """The processes of a process group that still run (zombies are gone for good)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def account(aws_emulator: object) -> Account:
    return Account.create()


@pytest.fixture(scope="module")
def completed_job(account: Account) -> dict[str, Any]:
    """A job that ran to completion: its name, description and log lines."""
    name = account.train(unique("done"), COMPLETING_SCRIPT,
                         hyperparameters={"lr": "0.1", "epochs": "3"})
    described = wait_for_training(account.sm, name)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    return {"name": name, "described": described,
            "messages": log_messages(account.logs, name)}


@pytest.fixture(scope="module")
def random_tuning(account: Account) -> dict[str, Any]:
    """A Random tuning job of 3 trials, 2 at a time, that completed."""
    name = account.tune(unique("rnd"), tuning_config(RandomSeed=11))
    described = wait_for_tuning(account.sm, name)
    assert described["HyperParameterTuningJobStatus"] == "Completed", described
    return {"name": name, "described": described, "trials": account.trials(name)}


# -- a completed job ----------------------------------------------------------------------------

def test_describe_completed_job_has_secondary_transitions_and_times(completed_job):
    described = completed_job["described"]
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert described["SecondaryStatus"] == "Completed"
    assert described["TrainingStartTime"] <= described["TrainingEndTime"]
    assert described["CreationTime"] <= described["TrainingStartTime"]
    assert described["TrainingTimeInSeconds"] >= 1
    assert described["BillableTimeInSeconds"] >= 1
    assert "FailureReason" not in described


def test_describe_completed_job_reports_last_value_of_each_metric(completed_job):
    metrics = {m["MetricName"]: m["Value"]
               for m in completed_job["described"]["FinalMetricDataList"]}
    assert metrics == {"loss": pytest.approx(0.3333), "accuracy": pytest.approx(0.7)}


def test_train_to_completion_uploads_model_and_output_archives(account, completed_job):
    name = completed_job["name"]
    prefix = f"jobs/{name}/output/"
    assert keys_under(account.s3, account.bucket, prefix) == [
        prefix + "model.tar.gz", prefix + "output.tar.gz"]
    assert completed_job["described"]["ModelArtifacts"]["S3ModelArtifacts"] == (
        f"s3://{account.bucket}/{prefix}model.tar.gz")
    model = tar_members(account.s3, account.bucket, prefix + "model.tar.gz")
    assert model == {"weights.txt": b"trained weights"}
    output = tar_members(account.s3, account.bucket, prefix + "output.tar.gz")
    assert output.get("report.txt") == b"a report"


def test_train_passes_hyperparameters_and_channel_to_script(account, completed_job):
    found = reports(completed_job["messages"])
    request_hyperparameters = {"lr": "0.1", "epochs": "3"}
    assert {k: v for k, v in found["hyperparameters"].items()
            if not k.startswith("sagemaker_")} == request_hyperparameters
    argv = found["argv"]
    assert argv[argv.index("--lr") + 1] == "0.1"
    assert argv[argv.index("--epochs") + 1] == "3"
    assert found["files"] == [f"sample-{i}.txt" for i in range(4)]


def test_train_logs_script_output_to_cloudwatch(account, completed_job):
    name = completed_job["name"]
    streams = account.logs.describe_log_streams(
        logGroupName=LOG_GROUP, logStreamNamePrefix=name)["logStreams"]
    assert [s["logStreamName"].rsplit("-", 1)[0] for s in streams] == [f"{name}/algo-1"]
    messages = completed_job["messages"]
    for epoch, loss in enumerate(("1.0000", "0.5000", "0.3333")):
        assert any(f"epoch={epoch}; loss={loss};" in m for m in messages), messages[-20:]


def test_train_runs_script_with_execution_role_credentials(account, completed_job):
    found = reports(completed_job["messages"])
    assert found["access_key"] != os.environ["AWS_ACCESS_KEY_ID"]
    assert found["session_token"] and found["session_token"] != os.environ.get(
        "AWS_SESSION_TOKEN")
    assert found["identity"].startswith(
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{account.role_name}/")


def test_train_gives_the_script_its_share_of_cores_with_passive_waits(account, completed_job):
    found = reports(completed_job["messages"])
    threads, policy = found["openmp"]
    assert int(threads) == max(1, os.cpu_count() or 1)  # one instance: every core of the host
    # Cores shared with the emulator: a spinning OpenMP wait would starve the other thread.
    assert policy == "PASSIVE"


def test_stop_completed_job_is_validation_error(account, completed_job):
    with pytest.raises(ClientError) as raised:
        account.sm.stop_training_job(TrainingJobName=completed_job["name"])
    code, message = error_of(raised)
    assert code == "ValidationException"
    assert "Completed" in message and completed_job["name"] in message


def test_create_training_job_with_duplicate_name_is_resource_in_use(account, completed_job):
    with pytest.raises(ClientError) as raised:
        account.train(completed_job["name"], COMPLETING_SCRIPT)
    code, message = error_of(raised)
    assert code == "ResourceInUse"
    assert completed_job["name"] in message
    # The first job is untouched.
    described = account.sm.describe_training_job(TrainingJobName=completed_job["name"])
    assert described["TrainingJobStatus"] == "Completed"


def test_train_with_container_entrypoint_maps_opt_ml_to_host_folder(account):
    code = textwrap.dedent(ENTRYPOINT_SCRIPT).encode()
    account.s3.put_object(Bucket=account.bucket, Key="code/entry/train.py", Body=code)
    name = unique("entry")
    request = account.training_request(name, ENTRYPOINT_SCRIPT,
                                       channels=[account.channel("code", "code/entry/")])
    request["HyperParameters"] = {"unused": "1"}
    request["AlgorithmSpecification"].update({
        "ContainerEntrypoint": ["/bin/bash"],
        "ContainerArguments": ["-c", ("cat /opt/ml/input/config/resourceconfig.json && echo && "
                                      "python3 /opt/ml/input/data/code/train.py /opt/ml/model")]})
    account.sm.create_training_job(**request)

    described = wait_for_training(account.sm, name)

    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    messages = log_messages(account.logs, name)
    assert any('"current_host": "algo-1"' in m for m in messages), messages
    found = reports(messages)
    assert "/opt/ml" not in found["argv"][1]  # the host folder stands in for /opt/ml
    assert found["script"] == os.path.join(os.path.dirname(found["argv"][1]),
                                           "input", "data", "code", "train.py")
    model = tar_members(account.s3, account.bucket, f"jobs/{name}/output/model.tar.gz")
    assert model == {"entrypoint.txt": b"written through the entry point"}


# -- data distribution --------------------------------------------------------------------------

def test_train_on_two_instances_shards_objects_by_s3_key(account):
    for index in range(6):
        account.s3.put_object(Bucket=account.bucket, Key=f"shards/part-{index}.txt", Body=b"y")
    everything = [f"part-{i}.txt" for i in range(6)]
    name = account.train(unique("shard"), LISTING_SCRIPT, instance_count=2, channels=[
        account.channel("sharded", "shards/", "ShardedByS3Key"),
        account.channel("replicated", "shards/", "FullyReplicated")])

    described = wait_for_training(account.sm, name)

    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    seen = {host: reports(log_messages(account.logs, name, host))
            for host in ("algo-1", "algo-2")}
    assert {host: found["host"] for host, found in seen.items()} == {
        "algo-1": "algo-1", "algo-2": "algo-2"}
    first, second = (set(seen[h]["files"]["sharded"]) for h in ("algo-1", "algo-2"))
    assert len(first) == len(second) == 3
    assert first.isdisjoint(second) and first | second == set(everything)
    for found in seen.values():
        assert found["files"]["replicated"] == everything


# -- failures -----------------------------------------------------------------------------------

def test_train_with_failing_script_fails_with_algorithm_error(account):
    name = account.train(unique("fail"), FAILING_SCRIPT)

    described = wait_for_training(account.sm, name)

    assert described["TrainingJobStatus"] == "Failed"
    assert described["SecondaryStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError")
    assert "the learning rate exploded" in described["FailureReason"]
    keys = keys_under(account.s3, account.bucket, f"jobs/{name}/")
    assert f"jobs/{name}/output/model.tar.gz" not in keys
    assert "ModelArtifacts" not in described


def test_create_training_job_with_empty_channel_fails_with_client_error(account):
    name = account.train(unique("empty"), COMPLETING_SCRIPT,
                         channels=[account.channel("train", "nothing-here/")])

    described = wait_for_training(account.sm, name)

    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError")
    assert f"s3://{account.bucket}/nothing-here/" in described["FailureReason"]
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert "Training" not in statuses


def test_channel_objects_are_each_authorised_as_the_role(account):
    """Each object of a channel is read as the job's role: an object its policy denies fails
    the job though its neighbours were allowed, and an SSE-KMS object needs kms:Decrypt."""
    kms = boto3.client("kms")
    key = kms.create_key(Description=unique("channel-key"))["KeyMetadata"]["Arn"]
    prefix = unique("mixed")
    for index in range(3):
        account.s3.put_object(Bucket=account.bucket, Key=f"{prefix}/ok-{index}.txt", Body=b"x",
                              ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
    role = unique("sm-partial")
    create_execution_role(account.iam, role, account.bucket)
    role_arn = account.iam.get_role(RoleName=role)["Role"]["Arn"]

    def run(name: str) -> dict[str, Any]:
        request = account.training_request(unique(name), COMPLETING_SCRIPT,
                                           channels=[account.channel("train", f"{prefix}/")])
        request["RoleArn"] = role_arn
        account.sm.create_training_job(**request)
        return wait_for_training(account.sm, request["TrainingJobName"])

    # No kms:Decrypt on the key: the first object already fails.
    denied = run("nodecrypt")
    assert denied["TrainingJobStatus"] == "Failed"
    assert "AccessDenied" in denied["FailureReason"] and "kms:Decrypt" in denied["FailureReason"]

    account.iam.put_role_policy(RoleName=role, PolicyName="decrypt", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key},
            {"Effect": "Deny", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{account.bucket}/{prefix}/secret*"}]}))
    assert run("decrypts")["TrainingJobStatus"] == "Completed"

    # One object the role may not read, sorted after three it may: the job still fails.
    account.s3.put_object(Bucket=account.bucket, Key=f"{prefix}/secret.txt", Body=b"x",
                          ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
    refused = run("secret")
    assert refused["TrainingJobStatus"] == "Failed"
    assert "s3:GetObject" in refused["FailureReason"]
    assert f"{prefix}/secret.txt" in refused["FailureReason"]


def test_create_training_job_with_unknown_role_is_validation_error(account):
    request = account.training_request(unique("norole"), COMPLETING_SCRIPT)
    request["RoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/{unique('missing')}"
    with pytest.raises(ClientError) as raised:
        account.sm.create_training_job(**request)
    code, message = error_of(raised)
    assert code == "ValidationException"
    assert f"Could not assume role {request['RoleArn']}" in message
    with pytest.raises(ClientError):  # nothing was created
        account.sm.describe_training_job(TrainingJobName=request["TrainingJobName"])


def test_create_training_job_with_role_not_trusting_sagemaker_is_validation_error(account):
    role = account.iam.create_role(RoleName=unique("lambda-only"),
                                   AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    request = account.training_request(unique("untrusted"), COMPLETING_SCRIPT)
    request["RoleArn"] = role["Role"]["Arn"]
    with pytest.raises(ClientError) as raised:
        account.sm.create_training_job(**request)
    code, message = error_of(raised)
    assert code == "ValidationException"
    assert "Could not assume role" in message and "sagemaker.amazonaws.com" in message


def test_describe_training_job_unknown_is_validation_error(account):
    name = unique("never")
    with pytest.raises(ClientError) as raised:
        account.sm.describe_training_job(TrainingJobName=name)
    code, message = error_of(raised)
    assert code == "ValidationException"
    assert name in message


def test_stop_training_job_unknown_is_validation_error(account):
    with pytest.raises(ClientError) as raised:
        account.sm.stop_training_job(TrainingJobName=unique("never"))
    assert error_of(raised)[0] == "ValidationException"


# -- stopping, checkpoints, the runtime limit ---------------------------------------------------

def test_stop_training_job_syncs_checkpoint_and_next_job_restores_it(account):
    checkpoints = f"s3://{account.bucket}/checkpoints/{unique('run')}/"
    first = account.train(unique("stop"), CHECKPOINT_SCRIPT, hyperparameters={"mode": "loop"},
                          CheckpointConfig={"S3Uri": checkpoints})
    wait_for(lambda: any(m.startswith("step 5") for m in log_messages(account.logs, first)),
             "the looping script to checkpoint a few steps")

    account.sm.stop_training_job(TrainingJobName=first)
    right_after = account.sm.describe_training_job(TrainingJobName=first)
    described = wait_for_training(account.sm, first)

    assert right_after["TrainingJobStatus"] == "Stopping"
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "Stopped"
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]][-1] == "Stopped"
    prefix = checkpoints[len(f"s3://{account.bucket}/"):]
    assert keys_under(account.s3, account.bucket, prefix) == [
        prefix + "final.txt", prefix + "step.txt"]
    final = account.s3.get_object(Bucket=account.bucket, Key=prefix + "final.txt")
    assert final["Body"].read().startswith(b"stopped after step ")

    second = account.train(unique("resume"), CHECKPOINT_SCRIPT,
                           CheckpointConfig={"S3Uri": checkpoints})
    resumed = wait_for_training(account.sm, second)

    assert resumed["TrainingJobStatus"] == "Completed", resumed.get("FailureReason")
    restored = reports(log_messages(account.logs, second))["restored"]
    assert set(restored) == {"final.txt", "step.txt"}
    assert restored["final.txt"] == f"stopped after step {restored['step.txt']}"


def test_stop_training_job_twice_is_validation_error(account):
    name = account.train(unique("stop2"), SLEEPING_SCRIPT)
    account.sm.stop_training_job(TrainingJobName=name)
    try:
        with pytest.raises(ClientError) as raised:
            account.sm.stop_training_job(TrainingJobName=name)
        code, message = error_of(raised)
        assert code == "ValidationException"
        assert re.search(r"is (Stopping|Stopped) and cannot be stopped", message), message
    finally:
        described = wait_for_training(account.sm, name)
    assert described["TrainingJobStatus"] == "Stopped"


def test_train_with_quiet_script_logs_its_last_line_while_running(account):
    name = account.train(unique("quiet"), SILENT_SCRIPT)
    try:
        # The script prints one line, then works in silence: the line must not wait for the
        # next one (or the job's end) to reach CloudWatch.
        found = wait_for(lambda: reports(log_messages(account.logs, name)).get("pgid"),
                         "the quiet script's line in CloudWatch", timeout=20)
        described = account.sm.describe_training_job(TrainingJobName=name)
        assert described["TrainingJobStatus"] == "InProgress"
        assert found > 1
    finally:
        account.sm.stop_training_job(TrainingJobName=name)
        assert wait_for_training(account.sm, name)["TrainingJobStatus"] == "Stopped"


def test_train_past_max_runtime_stops_with_max_runtime_exceeded(account):
    name = account.train(unique("slow"), SLEEPING_SCRIPT, max_runtime=2)

    described = wait_for_training(account.sm, name, timeout=30)

    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "MaxRuntimeExceeded"
    ran = (described["TrainingEndTime"] - described["TrainingStartTime"]).total_seconds()
    assert ran < 30  # the script alone would run for a minute
    assert any(m.startswith("tick ") for m in log_messages(account.logs, name))


# -- tuning -------------------------------------------------------------------------------------

def test_tune_random_completes_with_counters(random_tuning):
    described = random_tuning["described"]
    assert described["TrainingJobStatusCounters"]["Completed"] == 3
    assert described["TrainingJobStatusCounters"]["InProgress"] == 0
    assert described["ObjectiveStatusCounters"]["Succeeded"] == 3
    assert described["ObjectiveStatusCounters"]["Failed"] == 0
    assert described["HyperParameterTuningEndTime"] >= described["CreationTime"]


def test_list_tuning_trials_names_them_and_keeps_ranges(account, random_tuning):
    name = random_tuning["name"]
    trials = random_tuning["trials"]
    assert len(trials) == 3
    numbers = []
    for trial in trials:
        match = re.fullmatch(rf"{re.escape(name)}-(\d{{3}})-[0-9a-f]{{8}}",
                             trial["TrainingJobName"])
        assert match, trial["TrainingJobName"]
        numbers.append(match.group(1))
        assert trial["TrainingJobStatus"] == "Completed"
        assert trial["ObjectiveStatus"] == "Succeeded"
        tuned = trial["TunedHyperParameters"]
        assert set(tuned) == {"x", "n"}
        assert 0.0 <= float(tuned["x"]) <= 1.0
        assert tuned["n"] in ("1", "2", "3")
        described = account.sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert described["TuningJobArn"] == random_tuning["described"][
            "HyperParameterTuningJobArn"]
        assert described["HyperParameters"]["x"] == tuned["x"]
    assert sorted(numbers) == ["001", "002", "003"]


def test_tune_minimize_picks_trial_with_minimum_objective(account, random_tuning):
    trials = random_tuning["trials"]
    values = {t["TrainingJobName"]: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
              for t in trials}
    best = random_tuning["described"]["BestTrainingJob"]
    assert best["TrainingJobName"] == min(values, key=values.get)
    described = account.sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    metrics = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == metrics["objective"]
    tuned = best["TunedHyperParameters"]
    expected = (float(tuned["x"]) - 0.3) ** 2 + int(tuned["n"])
    assert metrics["objective"] == pytest.approx(expected, abs=1e-5)


def test_list_tuning_trials_sorted_by_final_objective(account, random_tuning):
    name = random_tuning["name"]
    values = {}
    for order in ("Ascending", "Descending"):
        trials = account.trials(name, SortBy="FinalObjectiveMetricValue", SortOrder=order)
        values[order] = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
                         for t in trials]
    assert len(values["Ascending"]) == 3
    assert values["Ascending"] == sorted(values["Ascending"])
    assert values["Descending"] == sorted(values["Ascending"], reverse=True)


def test_tune_grid_maximize_tries_every_category_and_picks_max(account):
    ranges = {"CategoricalParameterRanges": [{"Name": "color",
                                              "Values": ["red", "green", "blue"]}]}
    config = tuning_config("Grid", "Maximize", ranges=ranges, parallel=3)
    del config["ResourceLimits"]["MaxNumberOfTrainingJobs"]
    name = account.tune(unique("grid"), config)

    described = wait_for_tuning(account.sm, name)

    assert described["HyperParameterTuningJobStatus"] == "Completed", described
    trials = account.trials(name)
    assert sorted(t["TunedHyperParameters"]["color"] for t in trials) == [
        "blue", "green", "red"]
    best = described["BestTrainingJob"]
    assert best["TunedHyperParameters"] == {"color": "green"}
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(3.0)


def test_create_tuning_job_with_min_above_max_is_validation_error(account):
    ranges = {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "2", "MaxValue": "1"}]}
    name = unique("bad")
    with pytest.raises(ClientError) as raised:
        account.tune(name, tuning_config(ranges=ranges))
    code, message = error_of(raised)
    assert code == "ValidationException"
    assert "MinValue" in message and "hyperparameter x" in message
    with pytest.raises(ClientError) as missing:
        account.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert error_of(missing)[0] == "ResourceNotFound"


def test_stop_tuning_job_stops_running_trials(account):
    name = account.tune(unique("stophpo"), tuning_config(jobs=3, parallel=2),
                        static={"sleep": "60"})
    wait_for(lambda: len([t for t in account.trials(name)
                          if t["TrainingJobStatus"] == "InProgress"]) == 2,
             "two trials to run")

    account.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    right_after = account.sm.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name)
    described = wait_for_tuning(account.sm, name, timeout=30)

    assert right_after["HyperParameterTuningJobStatus"] == "Stopping"
    assert described["HyperParameterTuningJobStatus"] == "Stopped"
    trials = account.trials(name)
    assert len(trials) == 2  # the third was never started
    for trial in trials:
        assert trial["TrainingJobStatus"] == "Stopped"
        job = account.sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert job["TrainingJobStatus"] == "Stopped"
    assert described["TrainingJobStatusCounters"]["Stopped"] == 2


def test_tune_with_every_trial_failing_fails(account):
    name = account.tune(unique("allfail"), tuning_config(jobs=2, parallel=2),
                        static={"fail": "yes"})

    described = wait_for_tuning(account.sm, name)

    assert described["HyperParameterTuningJobStatus"] == "Failed"
    assert "objective" in described["FailureReason"]
    assert "BestTrainingJob" not in described
    assert described["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    for trial in account.trials(name):
        assert trial["TrainingJobStatus"] == "Failed"
        assert "this trial fails on purpose" in trial["FailureReason"]


# -- the emulator restarts ----------------------------------------------------------------------

@dataclass
class OwnEmulator:
    """An emulator with a state folder of its own, stopped and started by the test."""

    service: Any
    state: Path

    def start(self) -> None:
        emulator.start_service(self.service, self.state)

    def stop(self) -> None:
        emulator.stop_service(self.service, self.state)


@pytest.fixture
def own_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_emulator: object,
                 use_emulator) -> Iterator[OwnEmulator]:
    state = tmp_path / "state"
    own = OwnEmulator(emulator.emulator_service(port=emulator.free_port(), state=state), state)
    use_emulator(own.service)
    monkeypatch.setenv("BREEDOPS_JOB_STOP_GRACE_SECONDS", str(STOP_GRACE_SECONDS))
    own.start()
    try:
        yield own
    finally:
        own.stop()


def surviving_members(pgid: int, timeout: float) -> list[psutil.Process]:
    """The process group's live members once they are gone or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while (members := live_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return members


def restarted(sm: Any, name: str) -> dict[str, Any] | None:
    """The job's description once it shows that it runs again after the emulator's restart."""
    described = sm.describe_training_job(TrainingJobName=name)
    statuses = [t["Status"] for t in described.get("SecondaryStatusTransitions", [])]
    return described if "Restarting" in statuses else None


def test_restart_emulator_keeps_completed_job_and_runs_jobs_in_progress_again(own_emulator):
    local = Account.create()
    done = local.train(unique("kept"), COMPLETING_SCRIPT)
    before = wait_for_training(local.sm, done)
    assert before["TrainingJobStatus"] == "Completed", before.get("FailureReason")
    before_messages = log_messages(local.logs, done)
    running = local.train(unique("cut"), SILENT_SCRIPT)
    started = wait_for(lambda: reports(log_messages(local.logs, running)).get("pgid"),
                       "the sleeping script to start")
    tuning = local.tune(unique("cuthpo"), tuning_config(jobs=1, parallel=1),
                        static={"sleep": "60"})
    [first] = wait_for(lambda: local.trials(tuning), "the tuning job's trial to start")

    own_emulator.stop()
    leftovers = surviving_members(started, timeout=10)
    for process in leftovers:  # never leak a job into the rest of the run
        process.send_signal(signal.SIGKILL)
    own_emulator.start()
    sm, s3, logs = (boto3.client(n) for n in ("sagemaker", "s3", "logs"))
    try:
        after = sm.describe_training_job(TrainingJobName=done)
        # On AWS a job outlives an outage of the API: the emulator runs it again.
        again = wait_for(lambda: restarted(sm, running), "the cut job to run again")
        rerun = wait_for(lambda: reports(log_messages(logs, running)).get("pgid") != started
                         and reports(log_messages(logs, running)).get("pgid"),
                         "the cut job's script to start again")
        trial = wait_for(lambda: restarted(sm, first["TrainingJobName"]),
                         "the tuning job's trial to run again")
        cut_tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning)
    finally:
        sm.stop_training_job(TrainingJobName=running)
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning)
    stopped = wait_for_training(sm, running, timeout=20)

    assert leftovers == [], "the stopped emulator left the job's processes running"
    assert after["TrainingJobStatus"] == "Completed"
    assert after["FinalMetricDataList"] == before["FinalMetricDataList"]
    assert after["ModelArtifacts"] == before["ModelArtifacts"]
    assert s3.head_object(Bucket=local.bucket,
                          Key=f"jobs/{done}/output/model.tar.gz")["ContentLength"] > 0
    assert log_messages(logs, done) == before_messages
    assert again["TrainingJobStatus"] == "InProgress"
    assert rerun != started
    assert trial["TrainingJobStatus"] == "InProgress"
    assert cut_tuning["HyperParameterTuningJobStatus"] == "InProgress"
    assert [t["TrainingJobName"] for t in local.trials(tuning)] == [first["TrainingJobName"]]
    assert stopped["TrainingJobStatus"] == "Stopped"
    assert wait_for_tuning(sm, tuning, timeout=20)["HyperParameterTuningJobStatus"] == "Stopped"


def test_kill_emulator_mid_job_ends_its_leftovers_and_runs_it_again(own_emulator):
    local = Account.create()
    running = local.train(unique("killed"), SILENT_SCRIPT)
    started = wait_for(lambda: reports(log_messages(local.logs, running)).get("pgid"),
                       "the sleeping script to start")

    killed = psutil.Process(
        emulator.service_status(own_emulator.service, own_emulator.state).pid)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)  # its port is free once it is gone
    try:
        assert live_group_members(started), "a killed emulator's job outlives it until restart"
        own_emulator.start()
        sm = boto3.client("sagemaker")
        leftovers = surviving_members(started, timeout=10)
        again = wait_for(lambda: restarted(sm, running), "the killed job to run again")
        sm.stop_training_job(TrainingJobName=running)
        stopped = wait_for_training(sm, running, timeout=20)
    finally:
        for process in live_group_members(started):  # never leak a job into the rest of the run
            process.send_signal(signal.SIGKILL)

    assert leftovers == [], "the restarted emulator left the killed one's job processes running"
    assert again["TrainingJobStatus"] == "InProgress"
    assert stopped["TrainingJobStatus"] == "Stopped"


def test_stop_training_job_kills_script_ignoring_sigterm_after_grace(own_emulator):
    local = Account.create()
    name = local.train(unique("stubborn"), STUBBORN_SCRIPT)
    pgid = wait_for(lambda: reports(log_messages(local.logs, name)).get("pgid"),
                    "the stubborn script to start")

    local.sm.stop_training_job(TrainingJobName=name)
    stopped_at = time.monotonic()
    try:
        described = wait_for_training(local.sm, name, timeout=20)
        waited = time.monotonic() - stopped_at
        leftovers = surviving_members(pgid, timeout=5)
    finally:
        for process in live_group_members(pgid):  # never leak a job into the rest of the run
            process.send_signal(signal.SIGKILL)

    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "Stopped"
    assert waited >= STOP_GRACE_SECONDS  # SIGTERM first, SIGKILL only after the grace period
    assert leftovers == []
