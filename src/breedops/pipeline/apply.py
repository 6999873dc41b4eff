"""`make apply`: the whole pipeline, from nothing to a prediction through the Lambda.

Stages (each skipped when its inputs did not change, see `stages.py`):
services -> base infrastructure -> data -> tuning (its best trial's model is the artifact) ->
serving -> smoke test.
`env="local"` runs against the emulator with local jobs and hosting; `env="aws"` against the
account of the standard credential chain, with SageMaker jobs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breedops import hyperparameters, settings
from breedops.errors import BreedopsError, ConfigurationError
from breedops.pipeline.principals import OPERATOR, Principals
from breedops.pipeline.stages import (
    Outputs,
    Stage,
    StageLedger,
    digest,
    hash_files,
    run_stages,
)

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
# Jobs submitted by a stage that has not finished: the next run waits on them (jobs/submitted.py).
SUBMITTED_JOBS_FILE = "jobs.json"


@dataclass(frozen=True)
class PipelineOptions:
    """What `make apply` can be asked to vary; the defaults are the local demo's."""

    env: str = "local"
    dataset: str = "digits"
    # The tuning job's budget; None: the preset's (`hyperparameters.Preset.budget`).
    trials: int | None = None
    parallel_trials: int | None = None
    epochs: int | None = None  # fixes the tuner's epoch range
    force: bool = False
    # Hyperparameter defaults and ranges; None: the dataset's (`preset_for_dataset`).
    preset: str | None = None
    # A local pretrained weights file, uploaded and given to the jobs as their weights channel.
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.env not in settings.ENVIRONMENTS:
            raise ConfigurationError(f"unknown env {self.env!r}: use local or aws")
        if self.preset is not None and self.preset not in hyperparameters.PRESETS:
            raise ConfigurationError(f"unknown preset {self.preset!r}; choose one of "
                                     f"{', '.join(hyperparameters.PRESETS)}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise ConfigurationError(f"the weights file {self.weights} does not exist")
        try:
            self.budget  # noqa: B018 (resolving it checks it)
        except ValueError as e:
            raise ConfigurationError(str(e)) from e
        if self.epochs is not None and self.epochs < 1:
            raise ConfigurationError(f"epochs must be at least 1, got {self.epochs}")

    @property
    def preset_name(self) -> str:
        return self.preset or hyperparameters.preset_for_dataset(self.dataset)

    @property
    def budget(self) -> tuple[int, int]:
        """The tuning job's `(trials, at a time)`."""
        return hyperparameters.preset(self.preset_name).budget(self.trials, self.parallel_trials)


def pipeline_dir(env: str) -> Path:
    return settings.state_dir() / "pipeline" / env


def code_version(*packages: str) -> str:
    """A hash of the source of the given sub-packages of breedops."""
    src = Path(__file__).resolve().parents[1]
    return hash_files([src / p for p in packages], suffixes=(".py",))


def terraform_sources() -> str:
    root = settings.project_root() / "terraform"
    return hash_files([root / "modules", root / "envs"], suffixes=(".tf", ".hcl"))


def _log_file(env: str, name: str) -> Path:
    """A fresh log file for one stage's tool output, under the pipeline's folder."""
    path = pipeline_dir(env) / "logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def submitted_job(env: str, stage: str, fingerprint: Any):
    """Where `stage` records the job it submits for the inputs `fingerprint`."""
    from breedops.jobs.submitted import SubmittedJob

    return SubmittedJob(pipeline_dir(env) / SUBMITTED_JOBS_FILE, stage, digest(fingerprint))


# -- stages -----------------------------------------------------------------------------------

def _services(options: PipelineOptions) -> Stage:
    def run(_: Outputs) -> Outputs:
        if options.env == "local":
            from breedops.local import emulator
            from breedops.local.env_file import use_environment

            emulator.up()
            # Every later client (boto3, the SDK, Terraform) reaches the emulator through these.
            use_environment()
            return {"aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            identity = boto3.client("sts").get_caller_identity()
        except (BotoCoreError, ClientError) as e:
            raise ConfigurationError(f"no usable AWS credentials ({e})") from e
        return {"account": identity["Account"], "caller_arn": identity["Arn"]}

    hint = ("see .local/emulator.log; `make down && make up` restarts the emulator"
            if options.env == "local" else
            "configure credentials (aws configure / AWS_PROFILE / SSO) for the target account")
    return Stage("services", "local services" if options.env == "local" else "AWS credentials",
                 lambda _: None, run, hint, always_run=True, principal=None)


class DatasetPreparation:
    """`prepare` of the pipeline's dataset, started in a thread by the base stage: it needs no
    AWS, so it runs while Terraform waits on the provider (12 s on the KMS key alone). A base
    stage that runs makes the data stage run too, which takes the result (or the error)."""

    def __init__(self, dataset: str, local_dir: Path) -> None:
        self.dataset, self.local_dir = dataset, local_dir
        self._future: Future | None = None

    def start(self) -> None:
        if self._future is None:
            from breedops.data.prepare import prepare

            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
            self._future = pool.submit(prepare, self.dataset, self.local_dir)
            pool.shutdown(wait=False)  # the thread ends with the call

    def result(self) -> Path:
        self.start()
        assert self._future is not None
        return self._future.result()


def _base(options: PipelineOptions, pending: list[Any],
          preparation: DatasetPreparation) -> Stage:
    def fingerprint(_: Outputs) -> Any:
        return {"terraform": terraform_sources()}

    def run(_: Outputs) -> Outputs:
        from breedops.terraform import driver

        preparation.start()

        # The bucket's lifecycle rules cost a fixed 55 s wait that no later stage needs: they
        # are applied in the background, and the serving stage waits for them.
        out, background = driver.apply_deferring(
            options.env, log_file=_log_file(options.env, "terraform-base"))
        if background is not None:
            pending.append(background)
        return {"terraform_outputs": out}

    return Stage("base", "terraform apply: bucket, KMS key, roles and policies", fingerprint,
                 run, "read the Terraform error above; `make plan` shows what it tried to do",
                 still_valid=_bucket_exists)


def _data(options: PipelineOptions, preparation: DatasetPreparation) -> Stage:
    from breedops.data.prepare import dataset_name

    name = dataset_name(options.dataset)

    def fingerprint(out: Outputs) -> Any:
        source = Path(options.dataset)
        return {
            "dataset": options.dataset,
            "source": hash_files([source]) if source.is_dir() else None,
            "weights": hash_files([Path(options.weights)]) if options.weights else None,
            "code": code_version("data", "jobs", "training", "modeling", "serving"),
            "bucket": out["terraform_outputs"]["bucket_name"],
        }

    def run(out: Outputs) -> Outputs:
        import boto3

        from breedops.data.upload import upload_dataset, upload_weights
        from breedops.jobs.source_bundle import upload_training_source

        root = preparation.result()
        bucket = out["terraform_outputs"]["bucket_name"]
        uploaded, unchanged = upload_dataset(root, bucket, name)
        # What the EC2 training instance's user data downloads and runs.
        source_uri = upload_training_source(boto3.client("s3"), bucket)
        weights_uri = upload_weights(Path(options.weights), bucket) if options.weights else None
        return {"dataset": name, "dataset_dir": str(root), "dataset_hash": hash_files([root]),
                "dataset_uri": f"s3://{bucket}/data/{name}/", "training_source_uri": source_uri,
                "weights_uri": weights_uri, "uploaded": uploaded, "unchanged": unchanged}

    hint = ("for digits, check scikit-learn is installed (make setup); for a folder, it needs "
            "train/ valid/ test/ with the same class folders in each")
    return Stage("data", f"data: prepare {name}, upload it and the training source", fingerprint,
                 run, hint,
                 principal=OPERATOR)


def _training_request(options: PipelineOptions, out: Outputs):
    """What every trial of the tuning job runs, before the tuner sets the searched values."""
    from breedops.jobs.spec import DEFAULT_INSTANCE_TYPE, HyperParameters, TrainingRequest

    overrides = {} if options.epochs is None else {"epochs": options.epochs}
    tf = out["terraform_outputs"]
    return TrainingRequest(
        bucket=tf["bucket_name"], dataset=out["dataset"],
        role_arn=tf["sagemaker_execution_role_arn"],
        hyperparameters=HyperParameters.of_preset(options.preset_name, **overrides),
        name_prefix=tf["name_prefix"], code_prefix=tf["code_prefix"],
        weights_uri=out.get("weights_uri"),
        instance_type="ml.m5.large" if options.env == "local" else DEFAULT_INSTANCE_TYPE,
    )


def _tuning_request(options: PipelineOptions, out: Outputs):
    from breedops.jobs.spec import TuningRequest

    ranges = hyperparameters.preset(options.preset_name).search_ranges()
    if options.epochs is not None:
        ranges = hyperparameters.fixed(ranges, epochs=options.epochs)
    trials, parallel_trials = options.budget
    return TuningRequest(training=_training_request(options, out), ranges=ranges,
                         max_jobs=trials, max_parallel_jobs=parallel_trials)


def _tune(options: PipelineOptions) -> Stage:
    def fingerprint(out: Outputs) -> Any:
        return {"data": out["dataset_hash"], "request": repr(_tuning_request(options, out)),
                "code": code_version("training", "modeling", "serving")}

    def run(out: Outputs) -> Outputs:
        from breedops.jobs import workflow
        from breedops.jobs.artifacts import fetch_job_outputs

        backend = workflow.get_backend(options.env)
        submitted = submitted_job(options.env, "tune", fingerprint(out))
        result = backend.tune(_tuning_request(options, out), submitted)
        # The best trial's model is what gets served, as the SDK's `tuner.deploy()` does: every
        # trial packages the serving variant, and a training job with the best trial's
        # hyperparameters and seed would only compute the same model again.
        best = result.best
        workflow.record(options.env, backend, best, tuning_job_name=result.tuning_job_name)
        target = pipeline_dir(options.env) / "outputs" / best.job_name
        outputs = fetch_job_outputs(best.model_data_url, backend.s3, target)
        outputs += backend.save_job_logs(best.job_name, target)
        produced = {"tuning_job_name": result.tuning_job_name,
                    "tuning_objective_valid_loss": result.objective_value,
                    "best_hyperparameters": best.hyperparameters.as_strings(),
                    "training_job_name": best.job_name, "training_job_arn": best.job_arn,
                    "model_data_url": best.model_data_url, "test_metrics": best.metrics,
                    "artifacts_file": str(settings.artifacts_file(options.env)),
                    "plots": [str(p) for p in outputs if p.suffix == ".png"],
                    "job_logs": [str(p) for p in outputs if p.suffix == ".log"]}
        submitted.clear()  # the stage's record holds the result from here on
        return produced

    trials, parallel_trials = options.budget
    return Stage("tune", f"tuning job ({options.preset_name} preset): {trials} trials, "
                 f"{parallel_trials} in parallel; the best one's model -> artifacts file",
                 fingerprint, run,
                 "the failing trial's log is named above; fix the cause and re-run make apply",
                 principal=OPERATOR)


def _serving(options: PipelineOptions, pending: list[Any]) -> Stage:
    def fingerprint(out: Outputs) -> Any:
        artifacts = settings.artifacts_file(options.env)
        return {"artifact": artifacts.read_text() if artifacts.is_file() else None,
                "terraform": terraform_sources(),
                "lambda": hash_files([settings.lambda_zip_path()])}

    def run(_: Outputs) -> Outputs:
        from breedops.terraform import driver

        _finish_background(pending)
        return {"terraform_outputs": driver.apply(
            options.env, log_file=_log_file(options.env, "terraform-serving"))}

    return Stage("serving", "terraform apply: model, endpoint, autoscaling, Lambda, concurrency",
                 fingerprint, run,
                 "read the Terraform error above; `make lambda` rebuilds the Lambda zip")


def _smoke_test(options: PipelineOptions) -> Stage:
    def run(out: Outputs) -> Outputs:
        image, true_label = held_out_image(Path(out["dataset_dir"]))
        outputs = out["terraform_outputs"]
        status, payload, report = invoke_lambda(outputs["lambda_function_name"],
                                                outputs["lambda_alias_name"], image)
        if status != 200:
            raise BreedopsError(f"the Lambda answered {status}: {json.dumps(payload)}")
        top = payload["predictions"][0]
        return {"smoke_image": str(image), "smoke_true_label": true_label,
                "smoke_prediction": top, "smoke_report": report,
                "smoke_correct": _same_class(top, true_label)}

    return Stage("smoke", "smoke test: a held-out test image through the Lambda", lambda _: None,
                 run, "see .local/hosting.log for the endpoint's side", always_run=True,
                 principal=OPERATOR)


def _same_class(prediction: dict[str, Any], true_label: str) -> bool:
    return true_label in (prediction.get("label"), prediction.get("class_name"))


def held_out_image(dataset_dir: Path) -> tuple[Path, str]:
    """A fixed image of the test split (never seen in training) and its class."""
    from breedops.data.layout import scan_split

    split = scan_split(dataset_dir / "test", verify=False)
    if not split.samples:
        raise BreedopsError(f"no test images under {dataset_dir / 'test'}")
    path, index = sorted(split.samples)[len(split.samples) // 2]
    return path, split.classes[index]


def invoke_lambda(function: str, alias: str, image: Path) -> tuple[int, dict[str, Any], str]:
    """Invoke the deployed function with `image` through its alias, as any client does.

    One code path for every `env`: the emulator serves `Invoke` locally, Lambda on AWS. The
    status is the function's (its API Gateway `statusCode`), or the API's when `Invoke` itself
    failed; the report is the REPORT line of the invocation's log tail.
    """
    from breedops.serving import lambda_client

    answer = lambda_client.invoke(lambda_client.lambda_client(), function,
                                  lambda_client.image_payload(image), alias)
    if not answer.accepted:
        return answer.status, {"error": answer.error_code, "message": answer.error_message}, ""
    payload = answer.payload if isinstance(answer.payload, dict) else {"body": answer.payload}
    if answer.function_error:
        return 500, payload, answer.report or ""
    return int(payload.get("statusCode", 200)), _body(payload), answer.report or ""


def _body(response: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of an API Gateway proxy response (or the response itself)."""
    body = response.get("body")
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return {"body": body}
    return response


def _bucket_exists(base_outputs: Outputs) -> bool:
    """Whether the bucket of the last base apply still exists: an emulator whose state was
    wiped (or an account cleaned by hand) invalidates every stage."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = base_outputs.get("terraform_outputs", {}).get("bucket_name")
    if not bucket:
        return False
    try:
        boto3.client("s3").head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError):
        return False
    return True


def _finish_background(pending: list[Any]) -> None:
    """Wait for the base stage's background apply; the full apply that follows retries what
    it failed to do, and fails with Terraform's own error if that fails again."""
    from breedops.terraform.runner import TerraformError

    while pending:
        try:
            pending[0].wait()
        except TerraformError as e:
            log.warning("%s; the serving apply tries again", e)
        pending.pop(0)


def build_stages(options: PipelineOptions, pending: list[Any] | None = None) -> list[Stage]:
    """The stages; `pending` collects what a stage leaves running for a later one."""
    from breedops.data.prepare import dataset_name

    pending = [] if pending is None else pending
    preparation = DatasetPreparation(
        options.dataset, settings.state_dir() / "data" / dataset_name(options.dataset))
    return [_services(options), _base(options, pending, preparation),
            _data(options, preparation), _tune(options),
            _serving(options, pending), _smoke_test(options)]


def apply(options: PipelineOptions, out=sys.stdout) -> dict[str, Any]:
    """Run the pipeline; print and return its summary."""
    if not settings.lambda_zip_path().is_file():
        raise ConfigurationError(f"{settings.lambda_zip_path()} is missing: run `make lambda` first")
    started = time.monotonic()
    ledger = StageLedger(pipeline_dir(options.env) / "ledger.json")
    pending: list[Any] = []
    try:
        outputs, timeline = run_stages(build_stages(options, pending), ledger,
                                       force=options.force, act_as=Principals().act_as)
        _finish_background(pending)
    finally:  # a stage failed or was interrupted: Terraform still finishes what it started
        for background in pending:
            background.finish()
    summary = make_summary(options, outputs, timeline, time.monotonic() - started)
    path = pipeline_dir(options.env) / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str))
    print(render_summary(summary), file=out)
    return summary


def make_summary(options: PipelineOptions, outputs: Outputs,
                 timeline: list[tuple[str, str, float, str]], seconds: float) -> dict[str, Any]:
    from breedops.jobs.sagemaker_backend import training_log_command
    from breedops.terraform.runner import run

    tf = outputs["terraform_outputs"]
    state = run(settings.terraform_env_dir(options.env), "state", "list", env=options.env,
                capture=True).stdout.split()
    return {
        "env": options.env,
        "seconds": round(seconds, 1),
        "stages": [{"stage": s, "outcome": o, "seconds": round(t, 1), "principal": who}
                   for s, o, t, who in timeline],
        "resources": len([a for a in state if not a.split(".")[-2].startswith("data")
                          and ".data." not in f".{a}"]),
        "tuning_job_name": outputs["tuning_job_name"],
        "best_hyperparameters": outputs["best_hyperparameters"],
        "training_job_name": outputs["training_job_name"],
        "training_job_arn": outputs["training_job_arn"],
        "model_data_url": outputs["model_data_url"],
        "test_metrics": outputs["test_metrics"],
        "endpoint_name": tf.get("endpoint_name"),
        "lambda_function_name": tf.get("lambda_function_name"),
        "lambda_alias_name": tf.get("lambda_alias_name"),
        "smoke_image": outputs["smoke_image"],
        "smoke_true_label": outputs["smoke_true_label"],
        "smoke_prediction": outputs["smoke_prediction"],
        "smoke_correct": outputs["smoke_correct"],
        "smoke_report": outputs["smoke_report"],
        "plots": sorted(_shown(Path(p)) for p in outputs.get("plots", [])),
        "logs": training_log_command(outputs["training_job_name"]),
        "job_logs": sorted(_shown(Path(p)) for p in outputs.get("job_logs", [])),
    }


def _shown(path: Path) -> str:
    """A path as the user types it: relative to the project root when under it."""
    try:
        return str(path.relative_to(settings.project_root()))
    except ValueError:
        return str(path)


def render_summary(s: dict[str, Any]) -> str:
    accuracy = s["test_metrics"].get("test_accuracy")
    top = s["smoke_prediction"]
    ran = ", ".join(f"{x['stage']} {x['seconds']}s" if x["outcome"] == "ran"
                    else f"{x['stage']} skipped" for x in s["stages"])
    hp = ", ".join(f"{k}={v}" for k, v in sorted(s["best_hyperparameters"].items()))
    ran_as: dict[str, list[str]] = {}
    for x in s["stages"]:
        if x.get("principal"):
            ran_as.setdefault(x["principal"], []).append(x["stage"])
    lines = [
        "",
        f"breedops: {s['env']} pipeline complete in {s['seconds']}s ({ran})",
        f"  resources          {s['resources']} in Terraform state",
        *(f"  {'ran as' if i == 0 else '':<19}{arn} ({', '.join(stages)})"
          for i, (arn, stages) in enumerate(ran_as.items())),
        f"  tuning job         {s['tuning_job_name']}",
        f"  best hyperparams   {hp}",
        f"  best trial         {s['training_job_name']} (its model is served)",
        f"                     {s['training_job_arn']}",
        f"  model data         {s['model_data_url']}",
        f"  test accuracy      {accuracy:.4f}" if accuracy is not None else
        "  test accuracy      (not reported)",
        f"  endpoint           {s['endpoint_name']}",
        f"  lambda             {s['lambda_function_name']} (alias {s.get('lambda_alias_name')})",
        (f"  sample prediction  {top.get('label')} (p={top.get('probability', 0):.3f}) for "
         f"{Path(s['smoke_image']).name}, true label {s['smoke_true_label']}"
         f" -> {'correct' if s['smoke_correct'] else 'WRONG'}"),
        f"  lambda report      {s['smoke_report']}" if s["smoke_report"] else "",
        f"  plots              {', '.join(s['plots']) or '(none)'}",
        f"  training log       {', '.join(s.get('job_logs') or []) or '(none)'}",
        f"                     {s['logs']}",
        "",
        "next:",
        (f"  .venv/bin/breedops invoke --image {_shown(Path(s['smoke_image']))}"
         "   # predict through the Lambda"),
        "  make plan          # review what Terraform would change",
        "  make destroy       # remove serving and base resources (FORCE=1: the bucket too)",
    ]
    return "\n".join(lines)
