"""parliament over the policies rendered in a plan: explained and unexplained findings."""

from __future__ import annotations

import json

import pytest

from breedops.review import iam_lint
from breedops.review.tools import ReviewError

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "LambdaAssumeRole", "Effect": "Allow", "Action": "sts:AssumeRole",
    "Principal": {"Service": "lambda.amazonaws.com"}}]})
STAR = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "ReadEverything", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})


def _plan(**documents: tuple[str, str, str]) -> dict:
    return {"resource_changes": [
        {"address": address, "mode": "managed", "type": kind,
         "change": {"actions": ["no-op"], "before": None, "after": {attribute: document}}}
        for address, (kind, attribute, document) in documents.items()
    ]}


def test_lint_explains_trust_policy_without_resource():
    address = "module.platform.module.iam.aws_iam_role.lambda"
    findings = iam_lint.lint(_plan(**{address: ("aws_iam_role", "assume_role_policy", TRUST)}))
    assert [f.issue for f in findings] == ["MALFORMED"]
    assert findings[0].reason and "trust policy" in findings[0].reason


def test_lint_reports_resource_star_in_identity_policy_as_unexplained():
    address = "module.platform.module.iam.aws_iam_policy.lambda"
    findings = iam_lint.lint(_plan(**{address: ("aws_iam_policy", "policy", STAR)}))
    assert [(f.issue, f.reason) for f in findings] == [("RESOURCE_STAR", None)]
    assert "UNEXPLAINED" in findings[0].describe()


def test_lint_without_rendered_policies_asks_for_an_applied_environment():
    plan = {"resource_changes": [{"address": "aws_iam_policy.p", "mode": "managed",
                                  "type": "aws_iam_policy",
                                  "change": {"actions": ["create"], "after": {},
                                             "after_unknown": {"policy": True}}}]}
    with pytest.raises(ReviewError, match="make apply"):
        iam_lint.lint(plan)


def test_load_exceptions_rejects_an_exception_without_reason(tmp_path):
    path = tmp_path / "exceptions.json"
    path.write_text(json.dumps([{"issue": "RESOURCE_STAR", "address": ".*", "detail": ".*",
                                 "reason": " "}]))
    with pytest.raises(ReviewError, match="no reason"):
        iam_lint.load_exceptions(path)
    assert all(e["reason"] for e in iam_lint.load_exceptions())


def test_main_exits_one_on_unexplained_findings(tmp_path, capsys):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_plan(**{"aws_iam_policy.p": ("aws_iam_policy", "policy", STAR)})))
    assert iam_lint.main([str(path)]) == 1
    assert "1 unexplained" in capsys.readouterr().out
    role = "module.platform.module.iam.aws_iam_role.lambda"
    path.write_text(json.dumps(_plan(**{role: ("aws_iam_role", "assume_role_policy", TRUST)})))
    assert iam_lint.main([str(path)]) == 0


def test_main_skips_unrendered_plan_only_when_asked(tmp_path, capsys):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"resource_changes": []}))
    assert iam_lint.main([str(path), "--skip-unrendered"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert iam_lint.main([str(path)]) == 2
