"""Interrupts and kills during `make apply`, done for real: signals to process groups, `kill -9`.

Three small tests drive `breedops terraform apply` on a root of built-in `terraform_data`
resources (seconds each) while Terraform creates resources: Ctrl-C to the command's process
group, SIGTERM to the command alone, and Ctrl-C twice. One chained test runs the real `make apply` (reduced:
small digits, 2 trials, 1 epoch) in a sandbox with its own emulator, and in turn:

(a) Ctrl-C during the base stage's Terraform apply: Terraform finishes what it started, its
    state matches the emulator (every resource of the project's prefix in one is in the other),
    no lock is left;
(b) `kill -9` of the emulator while the data uploads, `make up`: nothing acknowledged is lost;
(c) Ctrl-C while the tuning job's trials train: the job goes on, and is named with how to
    stop it; then `kill -9` of the emulator while it still runs, `make up`: its trials run
    again;
(d) the next `make apply` waits on that same job (no second one is submitted); Ctrl-C during
    the serving stage's Terraform apply; state and emulator still agree;
(e) a last `make apply` converges and its smoke test passes, serving the best trial; one tuning
    job, no other training job, and every object, role and tag seen before the kills is still
    there.

"In the middle of" is read from what the emulator and the state show, never from sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import psutil
import pytest
from sandbox import make_sandbox, small_digits

from breedops.settings import DEFAULT_REGION

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
TRAIN_PER_CLASS, HELD_OUT_PER_CLASS = 20, 4
TRIALS, EPOCHS = 2, 1
RUN_TIMEOUT = 420.0  # one `make apply` of the reduced pipeline, at most
STOP_TIMEOUT = 120.0  # an interrupted or failing run, to exit
NAME_PREFIX = "breedops-local"
# Variables a sandboxed run never inherits: another emulator's, a profile's, another sandbox's.
FOREIGN_PREFIXES = ("AWS_", "BREEDOPS_")

SLOW_ROOT_TF = """
terraform {
  backend "local" {}
}

# Built-in resources whose creation takes seconds: an interrupt lands while they are in flight.
resource "terraform_data" "slow" {
  count = 3

  provisioner "local-exec" {
    command = "sleep 3"
  }
}

output "bucket_name" {
  value = "unused"
}
"""


def wait_for(probe: Callable[[], T | None], what: str, timeout: float,
             interval: float = 0.1, alive: subprocess.Popen | None = None,
             output: Path | None = None) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds, or as
    soon as `alive` (the run that should bring it about, printing to `output`) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            said = text(output)[-4000:] if output is not None else ""
            raise AssertionError(f"the run exited ({alive.returncode}) before {what}:\n{said}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


# -- Terraform alone ------------------------------------------------------------------------------

@pytest.fixture
def slow_root(tmp_path: Path) -> Path:
    """A project root whose `local` environment is three slow built-in resources."""
    env_dir = tmp_path / "terraform" / "envs" / "local"
    env_dir.mkdir(parents=True)
    (env_dir / "main.tf").write_text(SLOW_ROOT_TF)
    (tmp_path / ".local").mkdir()
    return tmp_path


@pytest.fixture
def slow_apply(slow_root: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`breedops terraform apply` in a process group of its own, as a shell starts a job, once
    Terraform creates resources; killed at the end if a test left it running."""
    output = slow_root / "apply.out"
    env = clean_environment(BREEDOPS_ROOT=str(slow_root),
                            AWS_ENDPOINT_URL="http://127.0.0.1:9")  # never called
    with output.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "breedops", "terraform", "apply", "--env", "local"],
            cwd=slow_root, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Creating..." in text(output), "Terraform to create a resource",
                 timeout=60, alive=process, output=output)
        yield process, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def check_stop(root: Path, process: subprocess.Popen, output: Path, created: int,
               said_before: str) -> str:
    """Terraform's state holds `created` resources and no lock, the next apply converges, and
    the command said what happened (`said_before`) in one line and exited 130."""
    state_dir = root / ".local" / "terraform"
    code = process.wait(timeout=60)
    said = text(output)
    assert not list(state_dir.glob("*.lock.info")), f"Terraform's lock was left behind:\n{said}"
    state = json.loads((state_dir / "local.tfstate").read_text())
    instances = [i for r in state["resources"] for i in r["instances"]]
    assert len(instances) == created, said
    again = subprocess.run(
        [sys.executable, "-m", "breedops", "terraform", "apply", "--env", "local"], cwd=root,
        env=clean_environment(BREEDOPS_ROOT=str(root), AWS_ENDPOINT_URL="http://127.0.0.1:9"),
        capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert code == 130, said
    assert f"interrupted: terraform apply in terraform/envs/local {said_before}" in said, said
    assert "Traceback" not in said
    return said


def test_ctrl_c_during_terraform_apply_lets_it_finish_what_it_started(slow_root, slow_apply):
    process, output = slow_apply
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    said = check_stop(slow_root, process, output, created=3,
                      said_before="finished what it had started")
    # Terraform was not asked to stop: it cancels calls in flight when it is.
    assert "Interrupt received" not in said


def test_sigterm_to_the_command_alone_is_handled_as_ctrl_c(slow_root, slow_apply):
    process, output = slow_apply
    process.send_signal(signal.SIGTERM)  # a supervisor's stop, to the command alone
    check_stop(slow_root, process, output, created=3,
               said_before="finished what it had started")


def test_second_ctrl_c_is_terraforms_graceful_stop(slow_root, slow_apply):
    process, output = slow_apply
    os.killpg(process.pid, signal.SIGINT)
    wait_for(lambda: "finishes what it started" in text(output), "the first interrupt",
             timeout=10)
    os.killpg(process.pid, signal.SIGINT)
    # Its provisioners were stopped: the resources in flight are tainted, in state.
    said = check_stop(slow_root, process, output, created=3, said_before="was stopped")
    assert "Interrupt received" in said


# -- the whole pipeline ---------------------------------------------------------------------------

@dataclass
class Project:
    """A sandboxed checkout with its own emulator ports, driven through `make` as a user does."""

    root: Path
    dataset: Path
    env: dict[str, str]
    runs: int = 0

    @property
    def state(self) -> Path:
        return self.root / ".local"

    @property
    def pipeline(self) -> Path:
        return self.state / "pipeline" / "local"

    def make(self, target: str) -> list[str]:
        """The real Makefile's `target` with this interpreter's venv; `-o setup -o venv`
        because the venv is the one running the tests (they would reinstall it from the
        sandbox)."""
        return ["make", "-o", "setup", "-o", "venv", target, f"VENV={sys.prefix}", f"DATASET={self.dataset}",
                f"TRIALS={TRIALS}", f"PARALLEL={TRIALS}", f"EPOCHS={EPOCHS}"]

    def start_apply(self) -> tuple[subprocess.Popen, Path]:
        """`make apply` as a terminal's foreground job: a process group of its own."""
        self.runs += 1
        output = self.root / f"apply-{self.runs}.out"
        with output.open("w") as out:
            process = subprocess.Popen(self.make("apply"), cwd=self.root, env=self.env,
                                       stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return process, output

    def up(self) -> None:
        done = subprocess.run(self.make("up"), cwd=self.root, env=self.env, text=True,
                              capture_output=True, timeout=180, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def admin(self, service: str) -> Any:
        from breedops.local.env_file import read_env_file

        variables = read_env_file(self.state / "env")
        return boto3.Session(
            aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
            region_name=DEFAULT_REGION,
        ).client(service, endpoint_url=variables["AWS_ENDPOINT_URL"])

    def emulator_pid(self) -> int:
        record = json.loads((self.state / "emulator.pid").read_text())
        return int(record["pid"])

    def kill_emulator(self) -> None:
        """`kill -9` the emulator, and wait until its port is free again."""
        pid = self.emulator_pid()
        os.kill(pid, signal.SIGKILL)
        port = int(self.env["BREEDOPS_EMULATOR_PORT"])

        def gone() -> bool:
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) != 0

        wait_for(gone, "the killed emulator to be gone", timeout=30)

    def terraform_state(self) -> dict[str, Any]:
        return json.loads((self.state / "terraform" / "local.tfstate").read_text())

    def submitted(self, stage: str) -> str | None:
        path = self.pipeline / "jobs.json"
        try:
            return (json.loads(path.read_text()).get(stage) or {}).get("name")
        except (FileNotFoundError, ValueError):
            return None


def stop_run(process: subprocess.Popen, output: Path, sig: int | None = None) -> str:
    """Signal the run's process group (Ctrl-C is SIGINT), wait for it to exit, return what
    it printed."""
    if sig is not None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the run did not exit:\n{text(output)[-3000:]}") from None
    return text(output)


def finish_run(process: subprocess.Popen, output: Path) -> str:
    try:
        process.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the run did not finish:\n{text(output)[-3000:]}") from None
    said = text(output)
    assert process.returncode == 0, said[-4000:]
    return said


# What Terraform makes, by type: the attribute that names it in state, and how to list what the
# emulator holds of the project's (its name prefix).
def _named(items: list[str]) -> set[str]:
    return {i for i in items if NAME_PREFIX in i}


LISTERS: dict[str, tuple[str, Callable[[Project], set[str]]]] = {
    "aws_s3_bucket": ("bucket", lambda p: _named(
        [b["Name"] for b in p.admin("s3").list_buckets()["Buckets"]])),
    "aws_iam_role": ("name", lambda p: _named(
        [r["RoleName"] for r in p.admin("iam").list_roles()["Roles"]])),
    "aws_iam_policy": ("arn", lambda p: _named(
        [x["Arn"] for x in p.admin("iam").list_policies(Scope="Local")["Policies"]])),
    "aws_kms_alias": ("name", lambda p: _named(
        [a["AliasName"] for a in p.admin("kms").list_aliases()["Aliases"]])),
    "aws_sagemaker_model": ("name", lambda p: _named(
        [m["ModelName"] for m in p.admin("sagemaker").list_models()["Models"]])),
    "aws_sagemaker_endpoint_configuration": ("name", lambda p: _named(
        [c["EndpointConfigName"] for c in
         p.admin("sagemaker").list_endpoint_configs()["EndpointConfigs"]])),
    "aws_sagemaker_endpoint": ("name", lambda p: _named(
        [e["EndpointName"] for e in p.admin("sagemaker").list_endpoints()["Endpoints"]])),
    "aws_lambda_function": ("function_name", lambda p: _named(
        [f["FunctionName"] for f in p.admin("lambda").list_functions()["Functions"]])),
}


def check_state_matches_emulator(project: Project) -> None:
    """Every resource in state exists in the emulator and every one of the project's in the
    emulator is in state (a killed Terraform leaves the latter out); no lock is left."""
    state = project.terraform_state()
    assert not list((project.state / "terraform").glob("*.lock.info")), \
        "Terraform's lock was left behind"
    for kind, (attribute, listed) in LISTERS.items():
        in_state = {instance["attributes"][attribute]
                    for resource in state["resources"]
                    if resource["mode"] == "managed" and resource["type"] == kind
                    for instance in resource["instances"]}
        in_emulator = listed(project)
        assert in_state == in_emulator, (
            f"{kind}: in state only {sorted(in_state - in_emulator)}, in the emulator only "
            f"{sorted(in_emulator - in_state)}")


def acknowledged(project: Project) -> dict[str, Any]:
    """What the emulator has acknowledged of the project: objects, roles and their tags, the
    bucket's tags."""
    s3, iam = project.admin("s3"), project.admin("iam")
    [bucket] = _named([b["Name"] for b in s3.list_buckets()["Buckets"]])
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    roles = {name: iam.list_role_tags(RoleName=name)["Tags"]
             for name in _named([r["RoleName"] for r in iam.list_roles()["Roles"]])}
    try:
        bucket_tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except s3.exceptions.ClientError:  # NoSuchTagSet
        bucket_tags = []
    return {"bucket": bucket, "keys": set(keys), "roles": roles, "bucket_tags": bucket_tags}


def check_kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["keys"] <= after["keys"], f"lost: {sorted(before['keys'] - after['keys'])[:5]}"
    assert before["roles"].items() <= after["roles"].items()
    assert before["bucket_tags"] == after["bucket_tags"]


def trials(project: Project, tuning_job: str) -> list[dict[str, Any]]:
    """The tuning job's trials, each as DescribeTrainingJob shows it."""
    sm = project.admin("sagemaker")
    listed = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job)["TrainingJobSummaries"]
    return [sm.describe_training_job(TrainingJobName=t["TrainingJobName"]) for t in listed]


def tuning_status(project: Project, tuning_job: str) -> str:
    return project.admin("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job)["HyperParameterTuningJobStatus"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    from breedops.serving.lambda_package import build_lambda_zip

    root = make_sandbox(tmp_path / "project", lambda path: build_lambda_zip(target=path))
    shutil.copy(REPO / "Makefile", root / "Makefile")
    # The code as it is now: the stages fingerprint their source, and a checkout edited while
    # the test runs would make a rerun start its jobs afresh.
    for folder in ("lambda", "src"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dataset = small_digits(tmp_path / "digits-small", tmp_path / "digits-full",
                           TRAIN_PER_CLASS, HELD_OUT_PER_CLASS)
    env = clean_environment(
        BREEDOPS_EMULATOR_PORT=str(free_port()), BREEDOPS_HOSTING_PORT=str(free_port()),
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_DEFAULT_REGION=DEFAULT_REGION, PYTHONPATH=str(root / "src"))
    project = Project(root, dataset, env)
    try:
        yield project
    finally:
        subprocess.run(project.make("down"), cwd=root, env=env, capture_output=True,
                       timeout=120, check=False)


def ctrl_c_while_terraform_creates(project: Project, stage: str) -> tuple[str, str]:
    """A `make apply` interrupted once the Terraform apply of `stage` created a resource;
    what the run printed, and Terraform's log."""
    run, output = project.start_apply()
    log = project.pipeline / "logs" / f"terraform-{stage}.log"
    wait_for(lambda: "Creation complete after" in text(log),
             f"the {stage} apply to create a resource", timeout=RUN_TIMEOUT, alive=run,
             output=output)
    return stop_run(run, output, signal.SIGINT), text(log)


def test_make_apply_survives_interrupts_and_emulator_kills(project: Project):
    # (a) Ctrl-C while the base stage's Terraform creates resources.
    said, base_log = ctrl_c_while_terraform_creates(project, "base")
    assert "Apply complete!" in base_log, base_log[-2000:]
    assert "finished what it had started" in said, said[-3000:]
    assert "state is saved" in said and "Traceback" not in said, said[-3000:]
    check_state_matches_emulator(project)

    # (b) kill -9 of the emulator while the data uploads, then `make up`.
    run, output = project.start_apply()
    s3 = None

    def uploading() -> dict[str, Any] | None:
        nonlocal s3
        if not project.pipeline.joinpath("ledger.json").is_file() or \
                "base" not in json.loads(project.pipeline.joinpath("ledger.json").read_text()):
            return None
        s3 = s3 or project.admin("s3")
        bucket = project.terraform_state()["outputs"]["bucket_name"]["value"]
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="data/")
        return acknowledged(project) if listed.get("KeyCount") else None

    before_kill = wait_for(uploading, "the data upload to start", timeout=RUN_TIMEOUT,
                           alive=run, output=output)
    project.kill_emulator()
    images = sum(1 for p in project.dataset.rglob("*.png"))
    uploaded = [k for k in before_kill["keys"] if k.startswith("data/")]
    assert 0 < len(uploaded) < images, "the emulator was not killed in the middle of the upload"
    stop_run(run, output)
    assert run.returncode != 0
    project.up()
    check_kept(before_kill, acknowledged(project))
    check_state_matches_emulator(project)

    # (c) Ctrl-C while the tuning job's trials train; then kill -9 of the emulator under it.
    run, output = project.start_apply()

    def training() -> str | None:
        name = project.submitted("tune")
        return name if name and any(t.get("SecondaryStatus") == "Training"
                                    for t in trials(project, name)) else None

    job = wait_for(training, "a trial of the tuning job to train", timeout=RUN_TIMEOUT,
                   alive=run, output=output)
    said = stop_run(run, output, signal.SIGINT)
    assert f"stopped waiting for tuning job {job}, which keeps running" in said, said[-3000:]
    assert "the next `make apply` resumes waiting on it" in said
    assert ("aws sagemaker stop-hyper-parameter-tuning-job "
            f"--hyper-parameter-tuning-job-name {job}") in said
    assert "Traceback" not in said
    assert tuning_status(project, job) == "InProgress"
    before_kill = acknowledged(project)
    project.kill_emulator()
    project.up()
    # On AWS a job outlives an outage of the API: the emulator runs the trials again.
    wait_for(lambda: any("Restarting" in [s["Status"] for s in t["SecondaryStatusTransitions"]]
                         for t in trials(project, job)),
             "a trial to run again", timeout=30)
    check_kept(before_kill, acknowledged(project))

    # (d) the rerun waits on the same job; Ctrl-C during the serving stage's Terraform apply.
    said, _ = ctrl_c_while_terraform_creates(project, "serving")
    assert f"tuning job {job}, submitted by an earlier run, is" in said, said[-3000:]
    assert "finished what it had started" in said, said[-3000:]
    check_state_matches_emulator(project)

    # (e) the last run converges; nothing acknowledged was lost, nothing was run twice.
    run, output = project.start_apply()
    said = finish_run(run, output)
    summary = json.loads((project.pipeline / "summary.json").read_text())
    assert "pipeline complete" in said
    assert summary["tuning_job_name"] == job
    assert summary["smoke_prediction"]["label"]
    sm = project.admin("sagemaker")
    assert summary["training_job_name"] == sm.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=job)["BestTrainingJob"]["TrainingJobName"]
    tuning_jobs = sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert [t["HyperParameterTuningJobName"] for t in tuning_jobs] == [job], \
        "a tuning job was submitted again"
    trained = [j["TrainingJobName"] for j in sm.list_training_jobs(MaxResults=100)[
        "TrainingJobSummaries"] if not j["TrainingJobName"].startswith(job)]
    assert trained == [], "a training job ran besides the trials"
    check_kept(before_kill, acknowledged(project))
    check_state_matches_emulator(project)
