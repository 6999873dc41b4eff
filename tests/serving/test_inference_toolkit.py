"""The handler under the serving container's own code: the PyTorch container's handler service
(sagemaker-pytorch-inference, which runs the sagemaker-inference toolkit's `Transformer`) with
the model as packaged; and local hosting, which must answer every request with the same status.

The toolkit answers a `BaseInferenceToolkitError` with its `status_code` and anything else with
500, so these are the statuses a client gets from a SageMaker endpoint.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

# Runs in a fresh interpreter, as a container's worker does: `code/` first on the path, and the
# tarball's `inference` (with its `breedops.modeling`) imported by the toolkit, not the repo's.
# The context is the slice of TorchServe's `ts.context.Context` that the toolkit calls.
TOOLKIT_DRIVER = r"""
import base64, json, sys
model_dir = sys.argv[1]
sys.path.insert(0, model_dir + "/code")
from sagemaker_pytorch_serving_container.handler_service import HandlerService


class RequestProcessor:
    def __init__(self, headers):
        self.headers = headers

    def get_request_properties(self):
        return self.headers


class Context:
    def __init__(self):
        self.system_properties = {"model_dir": model_dir}
        self.model_name = "model"
        self.request_processor = [RequestProcessor({})]
        self.status = (None, None)

    def set_response_status(self, code=200, phrase="", idx=0):
        self.status = (code, phrase)

    def set_response_content_type(self, idx, value):
        pass


context = Context()
service = HandlerService()
service.initialize(context)
for line in sys.stdin:
    case = json.loads(line)
    context.request_processor = [RequestProcessor(case["headers"])]
    context.status = (None, None)
    body = service.handle([{"body": base64.b64decode(case["body"])}], context)[0]
    code, phrase = context.status
    print(json.dumps({"status": code or 200, "phrase": phrase,
                      "body": body if isinstance(body, str) else body.decode()}), flush=True)
"""


def image(fmt: str, mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, None).save(buffer, fmt)
    return buffer.getvalue()


def as_json(data: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(data).decode()}).encode()


# (case, body, content type, accept, status, error type); None: a 200 with predictions.
CASES = [
    ("good JPEG", image("JPEG"), "image/jpeg", "application/json", 200, None),
    ("good PNG as JSON", as_json(image("PNG", "RGBA")), "application/json", None, 200, None),
    ("not an image", b"hello, not an image", "image/jpeg", None, 400, "InvalidRequestError"),
    ("truncated JPEG", image("JPEG", size=(300, 300))[:900], "image/jpeg", None, 400,
     "InvalidRequestError"),
    ("GIF", image("GIF", "P"), "image/png", None, 415, "UnsupportedImageFormatError"),
    ("bad base64", b'{"image": "@@@"}', "application/json", None, 400, "InvalidRequestError"),
    ("CSV", b"1,2,3", "text/csv", None, 415, "UnsupportedContentTypeError"),
    ("accept CSV", image("JPEG"), "image/jpeg", "text/csv", 406, "UnsupportedAcceptError"),
]
IDS = [case[0] for case in CASES]


def headers_of(content_type: str, accept: str | None) -> dict[str, str]:
    return {"Content-Type": content_type, **({"Accept": accept} if accept else {})}


@pytest.fixture(scope="module")
def packaged_model(model_tarball: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model.tar.gz extracted as SageMaker extracts it into /opt/ml/model."""
    target = tmp_path_factory.mktemp("opt-ml-model")
    with tarfile.open(fileobj=io.BytesIO(model_tarball)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="module")
def toolkit_answers(packaged_model: Path) -> dict[str, dict]:
    """Every case through the container's handler service, in one worker-like process."""
    requests = "".join(
        json.dumps({"headers": headers_of(content_type, accept),
                    "body": base64.b64encode(body).decode()}) + "\n"
        for _, body, content_type, accept, _, _ in CASES)
    done = subprocess.run([sys.executable, "-P", "-c", TOOLKIT_DRIVER, str(packaged_model)],
                          input=requests, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(CASES), done.stderr[-3000:]
    return dict(zip(IDS, answers, strict=True))


@pytest.fixture(scope="module")
def hosting_url(packaged_model: Path):
    """Local hosting serving the same extracted model on the container contract."""
    from breedops.local.hosting.server import build_server

    server = build_server("127.0.0.1", 0, model_dir=packaged_model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def invoke(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def assert_answer(status: int, body: str, expected_status: int, error: str | None) -> None:
    assert status == expected_status, body[:2000]
    if error is None:
        answer = json.loads(body)
        assert answer["model_version"] == "test-1" and len(answer["predictions"]) == 5
        return
    # The toolkit's error body: the handler's one-line JSON verdict, then the traceback it
    # appends; a client reads the first line.
    verdict = json.loads(body.splitlines()[0])
    assert verdict["error"] == error
    assert verdict["message"] and "Traceback" not in verdict["message"]


@pytest.mark.parametrize(("case", "body", "content_type", "accept", "status", "error"), CASES,
                         ids=IDS)
def test_toolkit_transformer_answers_status_and_message(toolkit_answers, case, body,
                                                        content_type, accept, status, error):
    answer = toolkit_answers[case]
    assert_answer(answer["status"], answer["body"], status, error)
    if error:  # the HTTP reason phrase is the plain message, no JSON, no traceback
        assert answer["phrase"] == json.loads(answer["body"].splitlines()[0])["message"]
        assert "Traceback" not in answer["phrase"] and "\n" not in answer["phrase"]


def test_toolkit_bad_image_message_is_clear(toolkit_answers):
    verdict = json.loads(toolkit_answers["not an image"]["body"].splitlines()[0])
    assert verdict["message"] == "the body is not a decodable image (JPEG or PNG)"
    gif = json.loads(toolkit_answers["GIF"]["body"].splitlines()[0])
    assert gif["message"] == "the image is GIF; send JPEG or PNG"


@pytest.mark.parametrize(("case", "body", "content_type", "accept", "status", "error"), CASES,
                         ids=IDS)
def test_local_hosting_answers_as_the_toolkit(hosting_url, toolkit_answers, case, body,
                                              content_type, accept, status, error):
    got_status, got_body = invoke(hosting_url, body, headers_of(content_type, accept))
    assert_answer(got_status, got_body, status, error)
    expected = toolkit_answers[case]
    assert got_status == expected["status"]
    assert got_body.splitlines()[0] == expected["body"].splitlines()[0]
