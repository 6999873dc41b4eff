"""`apply_deferring`: real Terraform, a built-in `terraform_data` root, a slow leaf.

The leaf stands in for S3 lifecycle rules (a fixed 55 s wait in the provider that nothing reads):
the first apply returns without it, a background apply adds it, and the plan is clean after.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breedops.terraform.driver import _apply_deferring
from breedops.terraform.runner import TerraformError, run

pytestmark = pytest.mark.terraform

LEAF = "terraform_data.leaf"


def write_root(root: Path, leaf_seconds: int, reader: bool = False) -> Path:
    """A root whose leaf takes `leaf_seconds` to create and leaves a marker file when done."""
    reader_block = 'resource "terraform_data" "reader" {\n  input = terraform_data.leaf.id\n}\n'
    (root / "main.tf").write_text(f'''
resource "terraform_data" "base" {{
  input = "made"
}}

resource "terraform_data" "leaf" {{
  input = terraform_data.base.output
  provisioner "local-exec" {{
    command = "sleep {leaf_seconds} && touch leaf-done"
  }}
}}

output "base" {{
  value = terraform_data.base.output
}}

# An output of variables alone: a targeted apply never writes it (it depends on no target).
variable "prefix" {{
  default = "breedops"
}}

output "prefix" {{
  value = var.prefix
}}
{reader_block if reader else ""}''')
    run(root, "init", "-input=false", "-no-color", capture=True)
    return root


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("BREEDOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


def plan_exit_code(root: Path) -> int:
    """0: nothing to change; 2: changes. `-lock-timeout=0s`: fails if the lock is still held."""
    return subprocess.run(["terraform", "plan", "-input=false", "-no-color", "-lock-timeout=0s",
                           "-detailed-exitcode"], cwd=root, capture_output=True,
                          timeout=60, check=False).returncode


def test_apply_deferring_returns_before_the_leaf_and_the_background_adds_it(root):
    write_root(root, leaf_seconds=6)
    started = time.monotonic()

    outputs, background = _apply_deferring(root, None, root / "apply.log", (LEAF,))

    assert outputs["base"] == "made"  # the outputs of the first round are there
    assert outputs["prefix"] == "breedops"
    assert background is not None
    assert not (root / "leaf-done").exists()
    assert background.process.poll() is None
    background.process.wait(timeout=45)  # bounds the test; wait() checks the outcome
    background.wait()
    assert time.monotonic() - started >= 6
    assert (root / "leaf-done").exists()
    assert plan_exit_code(root) == 0
    assert "Apply complete!" in background.log_file.read_text()


def test_apply_deferring_applies_a_deferrable_resource_that_another_reads_at_once(root):
    write_root(root, leaf_seconds=1, reader=True)

    _, background = _apply_deferring(root, None, root / "apply.log", (LEAF,))

    # Terraform adds what a target depends on: the reader's leaf is not left behind.
    assert (root / "leaf-done").exists()
    if background is not None:
        background.process.wait(timeout=45)
        background.wait()
    assert plan_exit_code(root) == 0


def test_apply_deferring_without_deferrable_changes_applies_the_saved_plan(root):
    write_root(root, leaf_seconds=0)

    outputs, background = _apply_deferring(root, None, root / "apply.log", ("aws_none.*",))

    assert background is None
    assert outputs["base"] == "made"
    assert (root / "leaf-done").exists()
    assert plan_exit_code(root) == 0


# The caller of a deferring apply, as `make apply` is: the test interrupts it with real signals.
CALLER = """
import sys
from pathlib import Path
from breedops.terraform.driver import _apply_deferring
root = Path(sys.argv[1])
_, background = _apply_deferring(root, None, root / "apply.log", ("terraform_data.leaf",))
print("deferred", flush=True)
try:
    background.wait()
except KeyboardInterrupt as e:
    print(f"interrupted: {e}", flush=True)
    sys.exit(130)
"""


def interrupt_caller(root: Path, interrupts: int) -> tuple[int, str]:
    """Run CALLER, send it `interrupts` SIGINTs once the background apply runs; (status, log)."""
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert caller.stdout.readline().strip().endswith("deferred")
    time.sleep(1)  # the background apply is inside the leaf's provisioner
    for _ in range(interrupts):
        caller.send_signal(signal.SIGINT)
        time.sleep(0.5)
    out, _ = caller.communicate(timeout=50)
    return caller.returncode, out


def test_one_interrupt_lets_the_background_apply_finish(root):
    write_root(root, leaf_seconds=4)

    status, out = interrupt_caller(root, interrupts=1)

    assert status == 130, out
    assert "finished what it had started" in out
    assert (root / "leaf-done").exists()
    assert plan_exit_code(root) == 0


def test_two_interrupts_stop_the_background_apply_and_release_the_lock(root):
    write_root(root, leaf_seconds=40)
    started = time.monotonic()

    status, out = interrupt_caller(root, interrupts=2)

    assert status == 130, out
    assert time.monotonic() - started < 30
    assert not (root / "leaf-done").exists()
    # The lock is released and the state saved: a plan runs and wants only the leaf.
    assert plan_exit_code(root) == 2


def test_apply_deferring_names_terraforms_error_when_the_plan_fails(root):
    (root / "main.tf").write_text('output "x" {\n  value = terraform_data.missing.output\n}\n')
    run(root, "init", "-input=false", "-no-color", capture=True)

    with pytest.raises(TerraformError, match=r"terraform plan failed in .*Error: Reference to "
                       r"undeclared resource.*full output: .*apply\.log"):
        _apply_deferring(root, None, root / "apply.log", (LEAF,))
    assert not (root / ".terraform" / "deferring.tfplan").exists()
