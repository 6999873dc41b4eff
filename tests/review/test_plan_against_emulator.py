"""`terraform plan` of the local env against the emulator: PLAN.md, protection, IAM lint."""

from __future__ import annotations

import contextlib
import json

import pytest

from breedops.review import iam_lint
from breedops.terraform import driver
from breedops.terraform.runner import TerraformError, run

pytestmark = [pytest.mark.emulator, pytest.mark.terraform, pytest.mark.slow]

BUCKET = "module.platform.module.data_bucket.aws_s3_bucket.this"


@pytest.fixture
def applied(aws_emulator, sandbox, monkeypatch):
    """The base env applied under a project name of its own, destroyed afterwards.

    The emulator is shared by the session: its own names keep this env apart from the others.
    """
    monkeypatch.setenv("TF_VAR_project", "planreview")
    driver.apply("local")
    yield sandbox
    env_root = sandbox / "terraform" / "envs" / "local"
    with contextlib.suppress(TerraformError):  # untainted already when the test failed early
        run(env_root, "untaint", BUCKET, env="local", capture=True)
    driver.destroy("local", force=True)


def test_plan_flags_replaced_bucket_diffs_iam_and_lints_clean(applied):
    sandbox = applied
    env_root = sandbox / "terraform" / "envs" / "local"
    iam = sandbox / "terraform" / "modules" / "iam" / "main.tf"
    source = iam.read_text()
    iam.write_text(source.replace(
        'actions   = ["s3:GetObject"]\n    resources = [local.objects.jobs]',
        'actions   = ["s3:GetObject", "s3:GetObjectTagging"]\n'
        '    resources = [local.objects.jobs]', 1))
    assert iam.read_text() != source, "the statement this test widens is no longer in iam/main.tf"
    plan_json, plan_md = driver.plan("local", fail_on_protected=True)
    text = plan_md.read_text()
    assert "CAUTION" not in text
    assert "+ Allow ReadJobArtifacts: s3:GetObject, s3:GetObjectTagging on" in text
    assert "## checkov" in text and " passed, 0 failed" in text
    findings = iam_lint.lint(json.loads(plan_json.read_text()))
    assert [f for f in findings if f.reason is None] == []

    run(env_root, "taint", BUCKET, env="local", capture=True)
    with pytest.raises(driver.ProtectedResourceError, match=f"--allow-destroy {BUCKET}"):
        driver.plan("local", fail_on_protected=True)
    _, plan_md = driver.plan("local", fail_on_protected=True, allow_destroy=(BUCKET,))
    text = plan_md.read_text()
    assert text.index(f"**replace** `{BUCKET}` (allowed by override)") < text.index("| module |")
    # The new bucket's ARN is unknown until apply, so the policies built from it are too.
    assert "+ (known after apply)" in text
