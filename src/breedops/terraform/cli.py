"""`breedops terraform ...`: apply, plan, destroy, validate-all, test-modules."""

from __future__ import annotations

import argparse
import json

from breedops.settings import ENVIRONMENTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `terraform` command group."""
    parser = subparsers.add_parser("terraform", help="drive the Terraform environments")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, func, help_text: str, with_env: bool = True) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        if with_env:
            sub.add_argument("--env", default="local", choices=ENVIRONMENTS,
                             help="environment root under terraform/envs (default: local)")
        sub.set_defaults(func=func)
        return sub

    add("apply", _apply, "apply the environment (base, plus serving once an artifact exists)")
    plan = add("plan", _plan, "plan the environment into plan.json and PLAN.md")
    plan.add_argument("--fail-on-protected", action="store_true",
                      help="exit non-zero when a bucket, KMS key or log group would be destroyed "
                      "or replaced without --allow-destroy")
    plan.add_argument("--allow-destroy", action="append", default=[], metavar="ADDRESS",
                      help="explicit override: a resource (or module) address that may be "
                      "destroyed or replaced; repeatable")
    destroy = add("destroy", _destroy, "destroy the environment except the data bucket")
    destroy.add_argument("--force", action="store_true",
                         help="also delete the data bucket with every object in it")
    add("output", _output, "print the environment's outputs as JSON")
    add("validate-all", _validate_all, "fmt -check and validate every module and env",
        with_env=False)
    add("test-modules", _test_modules, "run terraform test in every module", with_env=False)


def _apply(args: argparse.Namespace) -> int:
    from breedops.terraform import driver

    print(json.dumps(driver.apply(args.env), indent=2))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from breedops.terraform import driver

    plan_json, plan_md = driver.plan(args.env, fail_on_protected=args.fail_on_protected,
                                        allow_destroy=tuple(args.allow_destroy))
    print(plan_md.read_text(), end="")
    print(f"wrote {plan_json} and {plan_md}")
    return 0


def _destroy(args: argparse.Namespace) -> int:
    from breedops.terraform import driver

    driver.destroy(args.env, force=args.force)
    return 0


def _output(args: argparse.Namespace) -> int:
    from breedops.terraform import driver

    print(json.dumps(driver.outputs(args.env), indent=2))
    return 0


def _validate_all(args: argparse.Namespace) -> int:
    from breedops.terraform import driver

    driver.validate_all()
    print("every module and environment is formatted and valid")
    return 0


def _test_modules(args: argparse.Namespace) -> int:
    from breedops.terraform import driver

    driver.test_modules()
    return 0
