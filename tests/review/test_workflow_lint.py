"""The pull-request workflow passes the workflow linters, and the linters do catch mistakes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from breedops.review.tools import tool_path
from breedops.settings import project_root

WORKFLOWS = project_root() / ".github" / "workflows"


def _lint(path: Path) -> list[subprocess.CompletedProcess]:
    schema = subprocess.run(
        [str(tool_path("check-jsonschema")), "--builtin-schema", "vendor.github-workflows",
         str(path)], capture_output=True, text=True, check=False)
    audits = subprocess.run([str(tool_path("zizmor")), "--offline", str(path)],
                            capture_output=True, text=True, check=False)
    return [schema, audits]


def test_pull_request_workflow_passes_linters():
    workflow = WORKFLOWS / "pull-request.yml"
    assert workflow.is_file()
    for result in _lint(workflow):
        assert result.returncode == 0, result.stdout + result.stderr
    text = workflow.read_text()
    # The checks the issue asks for, and OIDC rather than stored keys.
    for needle in ("terraform fmt", "make lint", "test-modules", "pytest",
                   "--fail-on-protected", "breedops.review.iam_lint", "role-to-assume",
                   "id-token: write", "post-plan-comment.js"):
        assert needle in text
    assert "aws-secret-access-key" not in text and "secrets.AWS" not in text


@pytest.mark.parametrize("mistake, linter", [
    # A step with both `uses` and `run` is not a valid workflow.
    ("      - uses: actions/checkout@v4\n        run: echo hi\n", 0),
    # An unpinned action with credentials left in the checkout: zizmor's audits.
    ("      - uses: actions/checkout@v4\n", 1),
])
def test_linters_reject_broken_workflow(tmp_path, mistake, linter):
    workflow = tmp_path / "broken.yml"
    workflow.write_text(
        "name: broken\non: [pull_request]\npermissions: {}\njobs:\n  build:\n"
        "    runs-on: ubuntu-latest\n    steps:\n" + mistake)
    assert _lint(workflow)[linter].returncode != 0
