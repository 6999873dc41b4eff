"""PLAN.md from plan documents shaped like `terraform show -json` output."""

from __future__ import annotations

import json

from breedops.review.checkov import summarize_report
from breedops.review.plan_summary import (
    CheckovSummary,
    policy_changes,
    protected_changes,
    render,
    summarize,
    unapproved_protected_changes,
)

BUCKET = "module.platform.module.data_bucket.aws_s3_bucket.this"
KEY = "module.platform.module.data_bucket.aws_kms_key.this"
POLICY = "module.platform.module.iam.aws_iam_policy.lambda"


def _change(address: str, actions: list[str], before=None, after=None, unknown=None) -> dict:
    module, _, rest = address.rpartition(".aws_")
    return {
        "address": address, "module_address": module or None, "mode": "managed",
        "type": "aws_" + rest.split(".")[0],
        "change": {"actions": actions, "before": before, "after": after,
                   "after_unknown": unknown or {}},
    }


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


INVOKE = {"Sid": "InvokeEndpoint", "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
          "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/breedops-local-endpoint"}
LOGS = {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:PutLogEvents"],
        "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/x:*"}


def _plan(*changes: dict) -> dict:
    return {"format_version": "1.2", "resource_changes": list(changes)}


def test_summarize_counts_actions_per_module():
    plan = _plan(_change(BUCKET, ["delete", "create"]), _change(KEY, ["no-op"]),
                 _change(POLICY, ["update"]), _change("aws_sns_topic.x", ["create"]),
                 _change("module.a.aws_sqs_queue.q", ["delete"]))
    counts = summarize(plan)
    assert counts["module.platform.module.data_bucket"] == {"replace": 1}
    assert counts["module.platform.module.iam"] == {"change": 1}
    assert counts["root"] == {"add": 1} and counts["module.a"] == {"destroy": 1}


def test_protected_changes_flag_replaced_bucket_and_destroyed_key_only():
    plan = _plan(_change(BUCKET, ["create", "delete"]), _change(KEY, ["delete"]),
                 _change("module.l.aws_cloudwatch_log_group.this", ["update"]),
                 _change("module.l.aws_lambda_function.this", ["delete"]))
    assert protected_changes(plan) == [(BUCKET, "replace"), (KEY, "destroy")]


def test_unapproved_protected_changes_honour_address_and_module_overrides():
    plan = _plan(_change(BUCKET, ["delete", "create"]), _change(KEY, ["delete"]))
    assert unapproved_protected_changes(plan, []) == [BUCKET, KEY]
    assert unapproved_protected_changes(plan, [BUCKET]) == [KEY]
    assert unapproved_protected_changes(plan, ["module.platform.module.data_bucket"]) == []
    # A prefix that is not a whole address segment does not count as an override.
    assert unapproved_protected_changes(plan, ["module.platform.module.data"]) == [BUCKET, KEY]


def test_render_flags_protected_changes_before_the_table():
    text = render("local", _plan(_change(BUCKET, ["delete", "create"]),
                                 _change(POLICY, ["update"])))
    assert text.index("[!CAUTION]") < text.index("| module |")
    assert f"**replace** `{BUCKET}`" in text and "allowed by override" not in text
    allowed = render("local", _plan(_change(BUCKET, ["delete"])), allowed=[BUCKET])
    assert f"**destroy** `{BUCKET}` (allowed by override)" in allowed


def test_render_without_changes_says_so_and_has_no_caution():
    text = render("aws", _plan(_change(KEY, ["no-op"])))
    assert "No changes." in text and "CAUTION" not in text and "No policy changes." in text


def test_policy_changes_show_statements_before_and_after():
    wider = dict(INVOKE, Resource="arn:aws:sagemaker:us-east-1:123456789012:endpoint/*")
    plan = _plan(_change(POLICY, ["update"], before={"policy": _policy(INVOKE, LOGS)},
                         after={"policy": _policy(wider, LOGS)}))
    [change] = policy_changes(plan)
    text = render("local", plan)
    assert change.address == POLICY and change.attribute == "policy"
    assert "- Allow InvokeEndpoint: sagemaker:InvokeEndpoint on arn:aws:sagemaker:us-east-1:" \
           "123456789012:endpoint/breedops-local-endpoint" in text
    assert "+ Allow InvokeEndpoint: sagemaker:InvokeEndpoint on arn:aws:sagemaker:us-east-1:" \
           "123456789012:endpoint/*" in text
    assert "  Allow WriteLogs: logs:PutLogEvents on" in text


def test_policy_changes_ignore_reordered_actions_and_show_unknown_and_attachments():
    same = dict(LOGS, Action=list(reversed(LOGS["Action"])))
    attach = "module.platform.module.iam.aws_iam_role_policy_attachment.lambda"
    plan = _plan(
        _change(POLICY, ["update"], before={"policy": _policy(LOGS)},
                after={"policy": _policy(same)}, unknown={"policy": True}),
        _change(attach, ["create"], after={"role": "r"}, unknown={"policy_arn": True}),
    )
    text = render("local", plan)
    assert "+ (known after apply)" in text and "- Allow WriteLogs" in text
    assert "+ attach `(known after apply)` to `r`" in text
    unchanged = _plan(_change(POLICY, ["update"], before={"policy": _policy(LOGS)},
                              after={"policy": _policy(LOGS), "tags": {"a": "b"}}))
    assert policy_changes(unchanged) == []


def test_render_shows_checkov_summary_and_failures():
    report = {"summary": {"passed": 5, "failed": 1, "skipped": 2},
              "results": {"failed_checks": [{"check_id": "CKV_AWS_1", "resource": "aws_s3_bucket.b",
                                             "file_path": "/main.tf"}]}}
    summary = summarize_report(report)
    assert summary == CheckovSummary(5, 1, 2, (("CKV_AWS_1", "aws_s3_bucket.b", "/main.tf"),))
    text = render("local", _plan(), checkov=summary)
    assert "5 passed, 1 failed, 2 skipped" in text and "| CKV_AWS_1 |" in text
    assert "checkov could not run: boom" in render("local", _plan(),
                                                   checkov=CheckovSummary(0, 0, 0, error="boom"))


def test_summarize_counts_root_resources_and_render_totals():
    plan = {"resource_changes": [
        {"address": "module.a.x.y", "module_address": "module.a", "change": {"actions": ["create"]}},
        {"address": "module.a.x.z", "module_address": "module.a",
         "change": {"actions": ["delete", "create"]}},
        {"address": "x.root", "change": {"actions": ["no-op"]}},
        {"address": "x.gone", "change": {"actions": ["delete"]}},
    ]}
    counts = summarize(plan)
    assert counts["module.a"] == {"add": 1, "replace": 1}
    assert counts["root"] == {"destroy": 1}
    text = render("local", plan)
    assert "1 to add, 0 to change, 1 to replace, 1 to destroy" in text
    assert "- `module.a.x.z`" in text


def test_render_empty_plan_says_no_changes():
    assert "No changes." in render("local", {"resource_changes": []})
