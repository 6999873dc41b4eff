"""AWS APIs that the Terraform AWS provider needs and moto 5.2 lacks, added to moto in place.

Written the way moto writes a service: backend state, response methods and URL registration,
with requests validated and errors shaped like AWS's, so each part could be proposed upstream.

- application-autoscaling `TagResource`, `UntagResource`, `ListTagsForResource`, and `Tags` on
  `RegisterScalableTarget` (without `ListTagsForResource` the provider retries forever on
  `aws_appautoscaling_target`);
- Lambda `Put`/`Get`/`Delete`/`ListProvisionedConcurrencyConfig(s)`;
- CloudWatch Logs `FilterLogEvents` honours `logStreamNamePrefix` (moto ignores it and answers
  every stream of the group: one job's log would show another's lines);
- SageMaker `UpdateEndpoint` (without it an endpoint whose configuration changes, as every new
  model does, leaves the provider waiting forever); `CreateModel` keeps
  `EnableNetworkIsolation`; describe calls omit empty `DataCaptureConfig`/`VpcConfig` as AWS
  does (otherwise the provider replaces the model and endpoint configuration on every plan).

Reserved concurrency (`PutFunctionConcurrency`, `GetFunctionConcurrency`) exists in moto 5.2.
`apply()` is idempotent and must run before the server handles its first request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto.applicationautoscaling import models as autoscaling_models
from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.awslambda import urls as lambda_urls
from moto.awslambda.exceptions import InvalidParameterValueException, UnknownAliasException
from moto.awslambda.models import LambdaBackend
from moto.awslambda.responses import LambdaResponse
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.logs.exceptions import InvalidParameterException as LogsInvalidParameter
from moto.logs.exceptions import ResourceNotFoundException as LogsResourceNotFound
from moto.logs.responses import LogsResponse
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

# --- application-autoscaling tags -------------------------------------------------------------

MAX_TAGS_PER_RESOURCE = 50
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
TAG_KEY_PATTERN = re.compile(r"^[\w\s.:/=+\-@]+$")
SCALABLE_TARGET_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:application-autoscaling:[a-z0-9-]+:\d{12}:scalable-target/[A-Za-z0-9]+$"
)


class AutoscalingResourceNotFound(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ResourceNotFoundException", message)


class AutoscalingValidationError(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message)


def _target_tags(backend: Any) -> dict[str, dict[str, str]]:
    """Tags per scalable target ARN, kept on the backend so `moto reset` clears them too."""
    if not hasattr(backend, "scalable_target_tags"):
        backend.scalable_target_tags = {}
    return backend.scalable_target_tags


def _find_target(backend: Any, arn: str) -> Any:
    if not SCALABLE_TARGET_ARN_PATTERN.match(arn or ""):
        raise AutoscalingValidationError(
            f"1 validation error detected: Value '{arn}' at 'resourceARN' failed to satisfy "
            "constraint: Member must be a scalable target ARN"
        )
    for by_resource in backend.targets.values():
        for target in by_resource.values():
            if target.arn == arn:
                return target
    raise AutoscalingResourceNotFound(f"No scalable target found for ARN: {arn}")


def validate_tags(tags: Any) -> dict[str, str]:
    """Check tags as AWS does: a map of at most 50 keys, key 1-128 and value 0-256 characters."""
    if not isinstance(tags, dict):
        raise AutoscalingValidationError("Tags must be a map of tag keys to tag values")
    if len(tags) > MAX_TAGS_PER_RESOURCE:
        raise AutoscalingValidationError(
            f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; got {len(tags)}"
        )
    for key, value in tags.items():
        _validate_tag_key(key)
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
            raise AutoscalingValidationError(
                f"1 validation error detected: Value for tag '{key}' failed to satisfy "
                f"constraint: Member must have length less than or equal to "
                f"{MAX_TAG_VALUE_LENGTH}"
            )
    return dict(tags)


def _validate_tag_key(key: Any) -> None:
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_TAG_KEY_LENGTH
        or not TAG_KEY_PATTERN.match(key)
    ):
        raise AutoscalingValidationError(
            f"1 validation error detected: Value '{key}' at 'tags' failed to satisfy "
            f"constraint: Member must have length between 1 and {MAX_TAG_KEY_LENGTH} and "
            "contain only letters, digits, spaces and _ . : / = + - @"
        )
    if key.lower().startswith("aws:"):
        raise AutoscalingValidationError(f"Tag key '{key}' uses the reserved prefix aws:")


def _list_tags_for_resource(self: ApplicationAutoScalingResponse) -> str:
    backend = self.applicationautoscaling_backend
    target = _find_target(backend, self._get_param("ResourceARN"))
    return json.dumps({"Tags": _target_tags(backend).get(target.arn, {})})


def _tag_resource(self: ApplicationAutoScalingResponse) -> str:
    backend = self.applicationautoscaling_backend
    target = _find_target(backend, self._get_param("ResourceARN"))
    tags = validate_tags(self._get_param("Tags"))
    merged = {**_target_tags(backend).get(target.arn, {}), **tags}
    validate_tags(merged)
    _target_tags(backend)[target.arn] = merged
    return json.dumps({})


def _untag_resource(self: ApplicationAutoScalingResponse) -> str:
    backend = self.applicationautoscaling_backend
    target = _find_target(backend, self._get_param("ResourceARN"))
    keys = self._get_param("TagKeys")
    if not isinstance(keys, list):
        raise AutoscalingValidationError("TagKeys must be a list of tag keys")
    for key in keys:
        _validate_tag_key(key)
    current = _target_tags(backend).get(target.arn, {})
    _target_tags(backend)[target.arn] = {k: v for k, v in current.items() if k not in keys}
    return json.dumps({})


def _wrap_register_scalable_target(original: Any) -> Any:
    def register_scalable_target(self: ApplicationAutoScalingResponse) -> str:
        # Validate before registering: a rejected request must change nothing.
        tags = self._get_param("Tags")
        tags = validate_tags(tags) if tags is not None else None
        body = original(self)
        if tags:
            arn = json.loads(body)["ScalableTargetARN"]
            backend = self.applicationautoscaling_backend
            _target_tags(backend)[arn] = {**_target_tags(backend).get(arn, {}), **tags}
        return body

    register_scalable_target.__wrapped__ = original  # type: ignore[attr-defined]
    return register_scalable_target


def _wrap_deregister_scalable_target(original: Any) -> Any:
    def deregister_scalable_target(
        self: Any, namespace: str, r_id: str, dimension: str
    ) -> None:
        target = self.targets.get(dimension, {}).get(r_id)
        original(self, namespace, r_id, dimension)
        if target is not None:
            _target_tags(self).pop(target.arn, None)

    deregister_scalable_target.__wrapped__ = original  # type: ignore[attr-defined]
    return deregister_scalable_target


# --- Lambda provisioned concurrency ------------------------------------------------------------

PROVISIONED_CONCURRENCY_PATH = (
    r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"
)


class ProvisionedConcurrencyConfigNotFound(JsonRESTError):
    code = 404

    def __init__(self) -> None:
        super().__init__(
            "ProvisionedConcurrencyConfigNotFoundException",
            "No Provisioned Concurrency Config found for this function",
        )


class LambdaValidationError(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message)


@dataclass
class ProvisionedConcurrencyConfig:
    """One function qualifier's provisioned concurrency; locally it is allocated at once."""

    function_arn: str
    requested: int
    last_modified: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    )

    def to_dict(self, with_arn: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": self.requested,
            "AvailableProvisionedConcurrentExecutions": self.requested,
            "AllocatedProvisionedConcurrentExecutions": self.requested,
            "Status": "READY",
            "LastModified": self.last_modified,
        }
        return {"FunctionArn": self.function_arn, **body} if with_arn else body


def _provisioned_configs(backend: LambdaBackend) -> dict[str, ProvisionedConcurrencyConfig]:
    """Configs keyed on the qualified function ARN, kept on the backend so reset clears them."""
    if not hasattr(backend, "provisioned_concurrency_configs"):
        backend.provisioned_concurrency_configs = {}  # type: ignore[attr-defined]
    return backend.provisioned_concurrency_configs  # type: ignore[attr-defined]


def _qualified_arn(backend: LambdaBackend, function_name: str, qualifier: str | None) -> str:
    """The ARN of an alias or published version; raises as AWS does for anything else."""
    if not qualifier:
        raise InvalidParameterValueException(
            "Provisioned Concurrency Configs require a Qualifier: an alias or a published version"
        )
    if qualifier.upper() == "$LATEST":
        raise InvalidParameterValueException(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
        )
    function = backend.get_function(function_name)  # ResourceNotFoundException when unknown
    unqualified = function.function_arn.split(":$LATEST")[0]
    if qualifier.isdigit():
        backend.get_function(function_name, qualifier)  # unknown version -> 404
    else:
        try:
            backend.get_alias(qualifier, function_name)
        except UnknownAliasException:
            raise UnknownAliasException(f"{unqualified}:{qualifier}") from None
    return f"{unqualified}:{qualifier}"


def _function_name(self: LambdaResponse) -> str:
    return unquote(self.path.rstrip("/").rsplit("/", 2)[-2])


def _qualifier(self: LambdaResponse) -> str | None:
    return self.querystring.get("Qualifier", [None])[0]


def _put_provisioned_concurrency_config(self: LambdaResponse) -> tuple[int, dict, str]:
    backend = self.backend
    arn = _qualified_arn(backend, _function_name(self), _qualifier(self))
    requested = json.loads(self.body or "{}").get("ProvisionedConcurrentExecutions")
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        raise LambdaValidationError(
            f"1 validation error detected: Value '{requested}' at "
            "'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have "
            "value greater than or equal to 1"
        )
    reserved = backend.get_function(_function_name(self)).reserved_concurrency
    if reserved is not None and requested > int(reserved):
        raise InvalidParameterValueException(
            f"Requested Provisioned Concurrency ({requested}) should not be greater than the "
            f"reserved concurrency ({reserved}) of the function"
        )
    config = ProvisionedConcurrencyConfig(function_arn=arn, requested=requested)
    _provisioned_configs(backend)[arn] = config
    return 202, {"status": 202}, json.dumps(config.to_dict())


def _get_provisioned_concurrency_config(self: LambdaResponse) -> tuple[int, dict, str]:
    arn = _qualified_arn(self.backend, _function_name(self), _qualifier(self))
    config = _provisioned_configs(self.backend).get(arn)
    if config is None:
        raise ProvisionedConcurrencyConfigNotFound()
    return 200, {}, json.dumps(config.to_dict())


def _delete_provisioned_concurrency_config(self: LambdaResponse) -> tuple[int, dict, str]:
    arn = _qualified_arn(self.backend, _function_name(self), _qualifier(self))
    _provisioned_configs(self.backend).pop(arn, None)
    return 204, {"status": 204}, ""


def _list_provisioned_concurrency_configs(self: LambdaResponse) -> tuple[int, dict, str]:
    function = self.backend.get_function(_function_name(self))
    prefix = function.function_arn.split(":$LATEST")[0] + ":"
    configs = [
        config.to_dict(with_arn=True)
        for arn, config in sorted(_provisioned_configs(self.backend).items())
        if arn.startswith(prefix)
    ]
    return 200, {}, json.dumps({"ProvisionedConcurrencyConfigs": configs})


def _wrap_delete_function(original: Any) -> Any:
    def delete_function(self: LambdaBackend, function_name: str, qualifier: str | None = None):
        function = self.get_function(function_name)
        prefix = function.function_arn.split(":$LATEST")[0] + ":"
        original(self, function_name, qualifier)
        configs = _provisioned_configs(self)
        for arn in [a for a in configs if a.startswith(prefix)]:
            if qualifier is None or arn == prefix + qualifier:
                del configs[arn]

    delete_function.__wrapped__ = original  # type: ignore[attr-defined]
    return delete_function


# --- SageMaker UpdateEndpoint ------------------------------------------------------------------


def _update_endpoint(self: SageMakerResponse) -> ActionResult:
    """Switch an endpoint to another configuration, as AWS does once its rollout completes.

    With `RetainAllVariantProperties`, each variant keeps its current instance count (what
    Application Auto Scaling set), as on AWS.
    """
    backend: SageMakerModelBackend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        arn = FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
        raise SageMakerValidationError(message=f"Could not find endpoint '{arn}'.")
    config = backend.describe_endpoint_config(self._get_param("EndpointConfigName"))
    previous = {v["VariantName"]: v for v in endpoint.production_variants}
    variants = endpoint._process_production_variants(config["ProductionVariants"])
    if self._get_param("RetainAllVariantProperties"):
        for variant in variants:
            kept = previous.get(variant["VariantName"], {})
            for key in ("CurrentInstanceCount", "DesiredInstanceCount"):
                if key in kept:
                    variant[key] = kept[key]
    endpoint.endpoint_config_name = config["EndpointConfigName"]
    endpoint.production_variants = variants
    endpoint.data_capture_config = config.get("DataCaptureConfig")
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = utcnow()
    return ActionResult({"EndpointArn": endpoint.arn})


def _omit_empty(original: Any, *fields: str) -> Any:
    """Wrap a describe response so that empty optional structures are left out, as AWS does.

    moto answers `DataCaptureConfig: {}` or `VpcConfig: {}` for settings never made; the AWS
    provider reads those as configured blocks and plans a replacement on every run, and
    sagemaker-core's models reject them. (The response, not the backend: moto's own code
    reads those keys from the backend's dicts.)
    """

    def describe(self: SageMakerResponse) -> ActionResult:
        response = dict(original(self).result)
        for name in fields:
            if not response.get(name):
                response.pop(name, None)
        return ActionResult(response)

    describe.__wrapped__ = original  # type: ignore[attr-defined]
    return describe


def _wrap_create_model(original: Any) -> Any:
    """Keep `EnableNetworkIsolation`, which moto drops (it always answers false)."""

    def create_model(self: SageMakerResponse) -> ActionResult:
        result = original(self)
        model = self.sagemaker_backend.describe_model(self._get_param("ModelName"))
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation", False))
        return result

    create_model.__wrapped__ = original  # type: ignore[attr-defined]
    return create_model


# --- CloudWatch Logs FilterLogEvents by stream prefix --------------------------------------------


def _filter_log_events(self: LogsResponse) -> str:
    """FilterLogEvents with `logStreamNamePrefix`: only the streams whose names start with it."""
    prefix = self._get_param("logStreamNamePrefix")
    if prefix is None:
        return _filter_log_events.__wrapped__(self)  # type: ignore[attr-defined]
    if self._get_param("logStreamNames"):
        raise LogsInvalidParameter("logStreamNames and logStreamNamePrefix are mutually "
                                   "exclusive: specify one of them")
    group = self.logs_backend.groups.get(self._get_param("logGroupName"))
    if group is None:
        raise LogsResourceNotFound()
    names = [name for name in group.streams if name.startswith(prefix)]
    if not names:  # an empty name list would mean every stream
        return json.dumps({"events": [], "searchedLogStreams": []})
    events, next_token, searched = self.logs_backend.filter_log_events(
        group.name, names, self._get_param("startTime"), self._get_param("endTime"),
        self._get_param("limit"), self._get_param("nextToken"),
        self._get_param("filterPattern"), self._get_param("interleaved", False))
    return json.dumps({"events": events, "nextToken": next_token,
                       "searchedLogStreams": searched})


# --- registration ------------------------------------------------------------------------------


def apply() -> None:
    """Add the missing APIs to moto (idempotent)."""
    autoscaling = ApplicationAutoScalingResponse
    if hasattr(autoscaling, "list_tags_for_resource"):
        return
    autoscaling.list_tags_for_resource = _list_tags_for_resource  # type: ignore[attr-defined]
    autoscaling.tag_resource = _tag_resource  # type: ignore[attr-defined]
    autoscaling.untag_resource = _untag_resource  # type: ignore[attr-defined]
    autoscaling.register_scalable_target = _wrap_register_scalable_target(  # type: ignore[method-assign]
        autoscaling.register_scalable_target
    )
    backend_cls = autoscaling_models.ApplicationAutoscalingBackend
    backend_cls.deregister_scalable_target = _wrap_deregister_scalable_target(  # type: ignore[method-assign]
        backend_cls.deregister_scalable_target
    )

    LambdaResponse.put_provisioned_concurrency_config = _put_provisioned_concurrency_config  # type: ignore[attr-defined]
    LambdaResponse.get_provisioned_concurrency_config = _get_provisioned_concurrency_config  # type: ignore[attr-defined]
    LambdaResponse.delete_provisioned_concurrency_config = _delete_provisioned_concurrency_config  # type: ignore[attr-defined]
    LambdaResponse.list_provisioned_concurrency_configs = _list_provisioned_concurrency_configs  # type: ignore[attr-defined]
    LambdaBackend.delete_function = _wrap_delete_function(LambdaBackend.delete_function)  # type: ignore[method-assign]
    lambda_urls.url_paths[PROVISIONED_CONCURRENCY_PATH] = LambdaResponse.dispatch

    _filter_log_events.__wrapped__ = LogsResponse.filter_log_events  # type: ignore[attr-defined]
    LogsResponse.filter_log_events = _filter_log_events  # type: ignore[method-assign]

    SageMakerResponse.update_endpoint = _update_endpoint  # type: ignore[attr-defined]
    for action, fields in (("describe_endpoint", ("DataCaptureConfig",)),
                           ("describe_endpoint_config", ("DataCaptureConfig",)),
                           ("describe_model", ("VpcConfig",))):
        setattr(SageMakerResponse, action, _omit_empty(getattr(SageMakerResponse, action), *fields))
    SageMakerResponse.create_model = _wrap_create_model(  # type: ignore[method-assign]
        SageMakerResponse.create_model
    )
