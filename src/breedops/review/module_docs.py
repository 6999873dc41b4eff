"""The Inputs and Outputs tables of each Terraform module's README, generated from its .tf files.

Run as `python -m breedops.review.module_docs` (`make docs`) to rewrite the tables, or with
`--check` (`make lint`) to fail when a README no longer matches its module. Only the block between
terraform-docs' markers is generated; the prose around it is written by hand. terraform-docs itself
ships as a Go binary only, so python-hcl2 reads the variables and outputs here instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions
from lark.exceptions import LarkError

from breedops.settings import project_root

log = logging.getLogger(__name__)

BEGIN = "<!-- BEGIN_TF_DOCS -->"
END = "<!-- END_TF_DOCS -->"
MODULES_DIR = Path("terraform") / "modules"
FIX_COMMAND = "make docs"
_READ = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


class ModuleDocsError(Exception):
    """A module or README the generator cannot read; the message names the file."""


@dataclass(frozen=True)
class Variable:
    name: str
    description: str
    type: str
    default: str | None  # rendered as Terraform writes it; None: required


@dataclass(frozen=True)
class Output:
    name: str
    description: str


def read_module(module: Path) -> tuple[list[Variable], list[Output]]:
    """The variables and outputs of `module`, in the order its .tf files (by name) declare them."""
    variables: list[Variable] = []
    outputs: list[Output] = []
    for path in sorted(module.glob("*.tf")):
        try:
            document = hcl2.loads(path.read_text(), serialization_options=_READ)
        except (LarkError, ValueError) as e:
            raise ModuleDocsError(f"{path}: not valid HCL: {e}") from e
        for block in document.get("variable", []):
            ((name, body),) = block.items()
            variables.append(Variable(
                name=name, description=body.get("description", ""),
                type=_expression(body.get("type", "any")),
                default=_literal(body["default"]) if "default" in body else None))
        for block in document.get("output", []):
            ((name, body),) = block.items()
            outputs.append(Output(name=name, description=body.get("description", "")))
    return variables, outputs


def render(variables: list[Variable], outputs: list[Output]) -> str:
    """The generated block: an Inputs and an Outputs table, terraform-docs' columns."""
    lines = ["## Inputs", ""]
    if variables:
        lines += ["| Name | Description | Type | Default |", "|---|---|---|---|"]
        lines += [f"| `{v.name}` | {_cell(v.description)} | `{_cell(v.type)}` | "
                  f"{'required' if v.default is None else f'`{_cell(v.default)}`'} |"
                  for v in variables]
    else:
        lines.append("No inputs.")
    lines += ["", "## Outputs", ""]
    if outputs:
        lines += ["| Name | Description |", "|---|---|"]
        lines += [f"| `{o.name}` | {_cell(o.description)} |" for o in outputs]
    else:
        lines.append("No outputs.")
    return "\n".join(lines) + "\n"


def updated_readme(readme: Path, block: str) -> str:
    """`readme`'s text with `block` between the markers, everything else kept as written."""
    text = readme.read_text() if readme.is_file() else ""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ModuleDocsError(f"{readme}: needs one line {BEGIN} and, after it, one line {END} "
                              "where the generated Inputs and Outputs tables go")
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{block}{END}{rest.split(END, 1)[1]}"


def stale_readmes(modules: list[Path], write: bool) -> list[Path]:
    """The READMEs of `modules` whose tables differ from their .tf files; rewritten if `write`."""
    stale = []
    for module in modules:
        readme = module / "README.md"
        expected = updated_readme(readme, render(*read_module(module)))
        if readme.read_text() != expected:
            stale.append(readme)
            if write:
                readme.write_text(expected)
    return stale


def module_dirs(modules_dir: Path) -> list[Path]:
    return sorted(p for p in modules_dir.iterdir() if any(p.glob("*.tf")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="write the Inputs/Outputs tables of each Terraform module's README")
    parser.add_argument("modules", nargs="*", type=Path,
                        help=f"module folders (default: every module in {MODULES_DIR})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a README is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        modules = args.modules or module_dirs(project_root() / MODULES_DIR)
        stale = stale_readmes(modules, write=not args.check)
    except (ModuleDocsError, OSError) as e:
        log.error("module docs: %s", e)
        return 1
    if args.check and stale:
        for readme in stale:
            log.error("%s is stale: its Inputs/Outputs tables differ from the module's .tf files; "
                      "run `%s` to regenerate them", _shown(readme), FIX_COMMAND)
        return 1
    for readme in stale:
        log.info("rewrote the tables of %s", _shown(readme))
    if not stale:
        log.info("module docs: %d module READMEs match their .tf files", len(modules))
    return 0


def _shown(path: Path) -> Path:
    """`path` as the user typed the command: relative to the current folder when inside it."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _expression(value: str) -> str:
    """A type as written in HCL: python-hcl2 wraps expressions in ${...}."""
    return value[2:-1] if value.startswith("${") and value.endswith("}") else value


def _literal(value: Any) -> str:
    """A default as Terraform writes it: null, true, "text", ["a", "b"], {}."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return _expression(value)
    return json.dumps(value, ensure_ascii=False)


def _cell(text: str) -> str:
    """Text that stays within one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
