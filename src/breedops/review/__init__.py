"""Review of infrastructure changes: the linters (checkov, parliament) run over a plan."""
