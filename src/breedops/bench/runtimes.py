"""The network's forward pass alone on each CPU runtime: eager PyTorch, ONNX Runtime, OpenVINO.

Every runtime runs the same weights (the ONNX file packaging ships, exported with
`breedops.training.onnx_export`) on the same image, at the same intra-op thread count, timed
round by round in turn so that other load on the machine slows them alike. Each result carries
its agreement with eager (max |delta logit|, max |delta probability|, same top-1) and whether it
would pass packaging's gate. OpenVINO is optional (a ~180 MB install): imported only here, and
reported as unavailable when it does not import.

    python -m breedops.bench.runtimes --threads 2 --repeats 30
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUNTIMES = ("eager", "onnxruntime", "openvino")
ARCHS = ("resnet18", "resnet50")
IMAGE_SIZE = 224
NUM_CLASSES = 133  # the dog-breed classifier's head
CHECK_BATCH = 4  # images compared against eager (the timed call is batch 1)


@dataclass(frozen=True)
class RuntimeResult:
    """One runtime's forward pass for one architecture; `speedup` is eager p50 / this p50."""

    arch: str
    runtime: str
    threads: int
    image_size: int
    available: bool
    p50_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    speedup: float | None = None
    max_logit_delta: float | None = None
    max_probability_delta: float | None = None
    same_top1: bool | None = None
    passes_gate: bool | None = None
    version: str | None = None
    reason: str | None = None  # why a runtime is unavailable


def measure_runtimes(archs: Sequence[str] = ARCHS, *, threads: int = 2,
                     image_size: int = IMAGE_SIZE, num_classes: int = NUM_CLASSES,
                     repeats: int = 30, runtimes: Sequence[str] = RUNTIMES,
                     workdir: Path | None = None) -> list[RuntimeResult]:
    """Forward-pass latency (batch 1) of each runtime for each architecture, on the CPU.

    `threads` is every runtime's intra-op thread count (torch.set_num_threads for eager,
    intra_op_num_threads for ONNX Runtime, INFERENCE_NUM_THREADS for OpenVINO). Weights are
    seeded random (pretrained ones cannot be downloaded here): the speed is the architecture's.
    Returns one `RuntimeResult` per (arch, runtime), eager first; an unavailable runtime has
    `available=False` and a `reason`.
    """
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown or "eager" not in runtimes:
        raise ValueError(f"runtimes must include eager and come from {', '.join(RUNTIMES)}; "
                         f"got {', '.join(runtimes)}")
    with tempfile.TemporaryDirectory(prefix="breedops-runtimes-", dir=workdir) as scratch:
        results: list[RuntimeResult] = []
        for arch in archs:
            results += _measure_arch(arch, Path(scratch), threads=threads,
                                     image_size=image_size, num_classes=num_classes,
                                     repeats=repeats, runtimes=runtimes)
        return results


def _measure_arch(arch: str, scratch: Path, *, threads: int, image_size: int,
                  num_classes: int, repeats: int, runtimes: Sequence[str]) -> list[RuntimeResult]:
    import torch

    from breedops.bench.serving import percentiles
    from breedops.bench.speedups import _interleaved_samples_ms
    from breedops.modeling.architectures import build_model
    from breedops.training.onnx_export import MAX_PROBABILITY_DELTA, export_onnx

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_model(arch, num_classes).eval()
        onnx_path = scratch / f"{arch}.onnx"
        export_onnx(model, onnx_path, image_size)
        images = torch.randn(CHECK_BATCH, 3, image_size, image_size,
                             generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            reference = model(images)

        def eager(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(batch)

        forwards: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"eager": eager}
        versions = {"eager": f"torch {torch.__version__}"}
        unavailable: dict[str, str] = {}
        loaders = {"onnxruntime": _onnxruntime_forward, "openvino": _openvino_forward}
        for name in runtimes:
            if name == "eager":
                continue
            try:
                forwards[name], versions[name] = loaders[name](onnx_path, threads)
            except ImportError as e:
                unavailable[name] = f"{name} does not import: {e}"
        one = images[:1].contiguous()
        samples = _interleaved_samples_ms(
            {name: (lambda f=forward: f(one)) for name, forward in forwards.items()}, repeats)
        results = []
        baseline = percentiles(samples["eager"])["p50_ms"]
        for name in runtimes:
            if name in unavailable:
                results.append(RuntimeResult(arch, name, threads, image_size, available=False,
                                             reason=unavailable[name]))
                continue
            figures = percentiles(samples[name])
            logits = forwards[name](images).float()
            delta_p = float((torch.softmax(logits, 1) - torch.softmax(reference, 1)).abs().max())
            same = bool((logits.argmax(1) == reference.argmax(1)).all())
            results.append(RuntimeResult(
                arch, name, threads, image_size, available=True, p50_ms=figures["p50_ms"],
                p90_ms=figures["p90_ms"], min_ms=figures["min_ms"],
                speedup=round(baseline / figures["p50_ms"], 2),
                max_logit_delta=float((logits - reference).abs().max()),
                max_probability_delta=delta_p, same_top1=same,
                passes_gate=same and delta_p <= MAX_PROBABILITY_DELTA, version=versions[name]))
        logger.info("%s at %d px, %d threads: %s", arch, image_size, threads,
                    {r.runtime: r.speedup for r in results})
        return results
    finally:
        torch.set_num_threads(previous_threads)


def _onnxruntime_forward(path: Path, threads: int) -> tuple[Callable, str]:
    """The session the endpoint opens (packaging's gate opens the same)."""
    import onnxruntime
    import torch

    from breedops.training.onnx_export import INPUT_NAME, OUTPUT_NAME, runtime_session

    session = runtime_session(path, threads)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0])

    return forward, f"onnxruntime {onnxruntime.__version__}"


def _openvino_forward(path: Path, threads: int) -> tuple[Callable, str]:
    """OpenVINO's CPU plugin on the same ONNX file, in f32 (no bf16/int8 shortcuts)."""
    import openvino
    import torch

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        request.infer({0: batch.numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return forward, f"openvino {openvino.__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward-pass latency of eager, ONNX Runtime "
                                                 "and OpenVINO at one thread count.")
    parser.add_argument("--arch", action="append", choices=ARCHS,
                        help="architecture (repeatable; default: resnet18 and resnet50)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, every runtime")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="input side in px")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per runtime")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.image_size < 32:
        parser.error("--threads and --repeats must be >= 1, --image-size >= 32")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = measure_runtimes(args.arch or ARCHS, threads=args.threads,
                               image_size=args.image_size, repeats=args.repeats)
    json.dump(as_dicts(results), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def as_dicts(results: Sequence[RuntimeResult]) -> list[dict[str, Any]]:
    """JSON-ready results, for the benchmark's report."""
    return [asdict(r) for r in results]


if __name__ == "__main__":
    sys.exit(main())
