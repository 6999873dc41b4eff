"""One value for a command: the flag when given, else the env's Terraform output (contract 7)."""

from __future__ import annotations

from breedops.errors import ConfigurationError
from breedops.terraform.runner import TerraformError


def output_or_flag(given: str | None, env: str, output: str, flag: str) -> str:
    """`given` (the flag's value) wins; else the output `output` of `env`'s root.

    Neither: a ConfigurationError that names both ways to supply the value.
    """
    if given:
        return given
    from breedops.terraform.driver import outputs

    try:
        value = outputs(env).get(output)
    except TerraformError as e:
        raise ConfigurationError(
            f"give {flag}, or apply env {env!r} (`make tf-apply`) so that its Terraform output "
            f"{output!r} says it; its outputs cannot be read: {e}") from e
    if not value:
        raise ConfigurationError(
            f"give {flag}, or apply env {env!r} (`make tf-apply`; a model deployed for the "
            f"serving outputs) so that its Terraform output {output!r} says it: it is empty")
    return str(value)
