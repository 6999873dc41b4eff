"""The committed benchmark docs hold exactly the figures of the one run they cite.

Regenerates every generated document from the cited results file and compares: a figure edited
by hand, a doc left behind by a newer run, or a results file from another run fails here.
"""

from __future__ import annotations

import re

from breedops.bench.report import MODULE_README, generated_block, render_for_check
from breedops.bench.results import benchmarks_dir, load_run
from breedops.settings import project_root

CITATION = re.compile(r"\(results/(\d{8}T\d{6}Z\.json)\)")


def cited_run():
    summary = (benchmarks_dir() / "BENCHMARKS.md").read_text()
    cited = set(CITATION.findall(summary))
    assert len(cited) == 1, f"BENCHMARKS.md must cite exactly one results file, cites {cited}"
    return benchmarks_dir() / "results" / cited.pop()


def test_benchmark_docs_match_the_cited_run():
    path = cited_run()
    expected = render_for_check(path)
    assert (benchmarks_dir() / "BENCHMARKS.md").read_text() == expected["BENCHMARKS.md"]
    autoscaling = (benchmarks_dir() / "AUTOSCALING.md").read_text()
    assert generated_block(autoscaling) == expected["AUTOSCALING.md"]
    readme = (project_root() / MODULE_README).read_text()
    assert generated_block(readme) == expected[str(MODULE_README)]


def test_cited_run_passes_its_nesting_checks_and_is_alone_in_results():
    path = cited_run()
    results = load_run(path)
    assert results["plan"] == "full" and not results["quick"]
    assert results["serving"]["nesting"]["violations"] == []
    others = [p.name for p in path.parent.iterdir() if not p.name.startswith(results["run_id"])]
    assert others == []
