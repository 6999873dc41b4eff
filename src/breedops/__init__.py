"""breedops: an image classifier operationalised on AWS as code.

Packages form layers, and an import runs only downwards (pyproject's import-linter contracts,
checked by `make lint`), top to bottom:

- `cli`: the `breedops` command, which loads each package's `cli` module;
- `pipeline`, `bench`: workflows that compose everything below;
- `load`, `jobs`, `autoscale`: the load generator, SageMaker jobs, the scaling simulator;
- `training`, `serving`: the training entry point (staged alone into a job, so it reaches only
  `hyperparameters`, `data.layout`, `modeling` and `errors`), the inference handler, Lambda
  package and client;
- `data`, `hyperparameters`: datasets and their upload to the bucket that Terraform made; the
  schema of the entry point's hyperparameters and the per-dataset presets;
- `terraform`: the driver of the env roots; it writes the plan's review with `review`;
- `review` (reads plan documents), `local` (the emulator: AWS at another address), `modeling`;
- `settings`, `errors`, `interrupts`.

A lower package that needs something from above takes it as an argument (the autoscale
commands get the measured capacity from `bench`'s command group).
"""

__version__ = "0.1.0"
