"""Local SageMaker hosting: the SageMaker Runtime `InvokeEndpoint` protocol over local workers.

`POST /endpoints/<name>/invocations` is first authorized as SageMaker Runtime does it: the
emulator, which holds the account's keys and policies, checks the caller's signature and its
`sagemaker:InvokeEndpoint` permission on the endpoint's ARN (the service route `authorize`);
a denial is answered with AWS's error, and a request the emulator cannot check is refused
(503), never served unchecked. The request then resolves endpoint -> endpoint configuration ->
model -> model data URL through the SageMaker API of the emulator (as the SageMaker service,
with hosting's own credentials), downloads the model.tar.gz as the model's execution role (the
credentials SageMaker gets by assuming it), extracts it, and serves it with as many worker
processes as the variant's instance count, each loading the tarball's own `code/inference.py`.
The endpoint is re-resolved after a short TTL, so `update_endpoint` takes effect without a
restart; new InService endpoints are loaded in the background, as SageMaker loads a model
before it reports the endpoint InService. Errors have the shapes botocore parses
(`x-amzn-ErrorType`, `ValidationError`, `ModelError` with the container's status).

With `--model-dir DIR` it serves the container contract instead: `GET /ping` and
`POST /invocations` for one extracted model directory, unchecked (a container is reached by
SageMaker only, not by callers of the Runtime API).

- `server`: the HTTP layer (request parsing and limits, the authorization call, answers), run
  as `python -m breedops.local.hosting.server` (`make up`, `breedops serve`);
- `registry`: which endpoints exist, the model each serves, its download and preloading;
- `workers`: the worker pool of one model (respawn, invocation timeout) and `model_worker`,
  the process each worker runs;
- `watchdog`: the one thread that enforces every deadline.
"""
