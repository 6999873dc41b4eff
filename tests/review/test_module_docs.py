"""The generated Inputs/Outputs tables of the module READMEs: check mode, write mode, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from breedops.review import module_docs
from breedops.settings import project_root

VARIABLES_TF = '''variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
}

variable "settings" {
  description = "Size | count."
  type = object({
    size = optional(number, 2)
  })
  default = {}
}
'''
OUTPUTS_TF = '''output "bucket_name" {
  description = "Name of the bucket."
  value       = "x"
}
'''
PROSE_ABOVE = "# `demo` module\n\nWritten by hand.\n\n"
PROSE_BELOW = "\n## Why these defaults\n\nAlso by hand.\n"


@pytest.fixture
def module(tmp_path: Path) -> Path:
    """A module whose README is current, then its variables.tf gains `tags`."""
    root = tmp_path / "demo"
    root.mkdir()
    (root / "variables.tf").write_text(VARIABLES_TF)
    (root / "outputs.tf").write_text(OUTPUTS_TF)
    (root / "README.md").write_text(
        f"{PROSE_ABOVE}{module_docs.BEGIN}\n{module_docs.END}\n{PROSE_BELOW}")
    assert module_docs.main([str(root)]) == 0
    return root


def test_generated_tables_hold_every_input_and_output_and_keep_the_prose(module):
    readme = (module / "README.md").read_text()
    assert readme.startswith(PROSE_ABOVE) and readme.endswith(PROSE_BELOW)
    assert "| `name_prefix` | Prefix of every resource name. | `string` | required |" in readme
    assert ("| `settings` | Size \\| count. | `object({size = optional(number, 2)})` | `{}` |"
            in readme)
    assert "| `bucket_name` | Name of the bucket. |" in readme


def test_check_fails_on_a_readme_missing_a_variable(module, caplog):
    variables = module / "variables.tf"
    variables.write_text(variables.read_text() + '''
variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
''')
    before = (module / "README.md").read_text()
    with caplog.at_level(logging.ERROR):
        assert module_docs.main(["--check", str(module)]) == 1
    assert f"{module / 'README.md'} is stale" in caplog.text
    assert f"run `{module_docs.FIX_COMMAND}`" in caplog.text
    assert (module / "README.md").read_text() == before

    assert module_docs.main([str(module)]) == 0
    assert "| `tags` | Tags added to every resource. | `map(string)` | `{}` |" in (
        module / "README.md").read_text()
    assert module_docs.main(["--check", str(module)]) == 0


def test_readme_without_markers_is_named(module, caplog):
    (module / "README.md").write_text(PROSE_ABOVE)
    with caplog.at_level(logging.ERROR):
        assert module_docs.main(["--check", str(module)]) == 1
    assert f"{module / 'README.md'}: needs one line {module_docs.BEGIN}" in caplog.text


def test_invalid_hcl_is_named_not_a_traceback(module, caplog):
    (module / "variables.tf").write_text('variable "broken" {\n')
    with caplog.at_level(logging.ERROR):
        assert module_docs.main(["--check", str(module)]) == 1
    assert f"{module / 'variables.tf'}: not valid HCL" in caplog.text


def test_the_project_module_readmes_are_current():
    modules = module_docs.module_dirs(project_root() / module_docs.MODULES_DIR)
    assert [m.name for m in modules] == sorted(
        p.parent.name for p in (project_root() / module_docs.MODULES_DIR).glob("*/README.md"))
    assert module_docs.stale_readmes(modules, write=False) == []
