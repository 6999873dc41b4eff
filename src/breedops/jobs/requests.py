"""The SageMaker API request shapes the local backend registers (as CreateTrainingJob would)."""

from __future__ import annotations

from typing import Any

from breedops.jobs.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE
from breedops.jobs.spec import CHANNELS, TrainingRequest, TuningRequest

# Local jobs run as processes; the image field records what runs them.
LOCAL_TRAINING_IMAGE = "breedops-local-process:latest"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
VOLUME_SIZE_GB = 30


def distribution_type(channel: str, instance_count: int) -> str:
    """Each host gets 1/N of the training objects; evaluation splits go to every host."""
    return "ShardedByS3Key" if channel == "train" and instance_count > 1 else "FullyReplicated"


def input_data_config(request: TrainingRequest) -> list[dict[str, Any]]:
    return [
        {"ChannelName": channel,
         "DataSource": {"S3DataSource": {
             "S3DataType": "S3Prefix", "S3Uri": request.channel_uri(channel),
             "S3DataDistributionType": distribution_type(channel, request.instance_count)}},
         "InputMode": "File"}
        for channel in CHANNELS
    ]


def _common(request: TrainingRequest) -> dict[str, Any]:
    stopping = {"MaxRuntimeInSeconds": request.max_run_s}
    if request.use_spot:
        stopping["MaxWaitTimeInSeconds"] = request.max_wait_s
    return {
        "AlgorithmSpecification": {"TrainingImage": LOCAL_TRAINING_IMAGE,
                                   "TrainingInputMode": "File",
                                   "MetricDefinitions": METRIC_DEFINITIONS},
        "RoleArn": request.role_arn,
        "InputDataConfig": input_data_config(request),
        "OutputDataConfig": {"S3OutputPath": request.output_uri},
        "ResourceConfig": {"InstanceType": request.instance_type,
                           "InstanceCount": request.instance_count,
                           "VolumeSizeInGB": VOLUME_SIZE_GB},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": request.use_spot,
    }


def create_training_job_request(request: TrainingRequest, job_name: str,
                                hyperparameters: dict[str, str]) -> dict[str, Any]:
    """CreateTrainingJob's parameters."""
    return {
        "TrainingJobName": job_name,
        "HyperParameters": hyperparameters,
        **_common(request),
        "CheckpointConfig": {"S3Uri": request.checkpoint_uri(job_name),
                             "LocalPath": CHECKPOINT_LOCAL_PATH},
        "Tags": [{"Key": k, "Value": v} for k, v in request.tags.items()],
    }


def create_tuning_job_request(request: TuningRequest, job_name: str) -> dict[str, Any]:
    """CreateHyperParameterTuningJob's parameters."""
    ranges = request.ranges
    static = {k: v for k, v in request.training.hyperparameters.as_strings().items()
              if k not in ("lr", "batch-size", "epochs")}
    return {
        "HyperParameterTuningJobName": job_name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": OBJECTIVE_TYPE,
                                                 "MetricName": OBJECTIVE_METRIC},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": request.max_jobs,
                               "MaxParallelTrainingJobs": request.max_parallel_jobs},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "lr", "MinValue": str(ranges.lr[0]), "MaxValue": str(ranges.lr[1]),
                     "ScalingType": "Logarithmic"}],
                "IntegerParameterRanges": [
                    {"Name": "batch-size", "MinValue": str(ranges.batch_size[0]),
                     "MaxValue": str(ranges.batch_size[1]), "ScalingType": "Linear"},
                    {"Name": "epochs", "MinValue": str(ranges.epochs[0]),
                     "MaxValue": str(ranges.epochs[1]), "ScalingType": "Linear"}],
                "CategoricalParameterRanges": [],
            },
            "TrainingJobEarlyStoppingType": "Off",
        },
        "TrainingJobDefinition": {"StaticHyperParameters": static,
                                  **_common(request.training)},
        "Tags": [{"Key": k, "Value": v} for k, v in request.training.tags.items()],
    }
