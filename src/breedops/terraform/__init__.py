"""Terraform: `driver` runs the env roots (init, plan, apply, destroy, outputs, validation, module
tests) through `runner`, the terraform CLI for one root; `outputs` gives the CLIs one output with
a flag's override.

The driver writes the plan's review (PLAN.md) with `breedops.review`, which reads plan documents
and never runs Terraform: review sits below this package (see `breedops`' layers).
"""
