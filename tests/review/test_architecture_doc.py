"""Every "contract N" the repository cites is a contract of docs/ARCHITECTURE.md."""

from __future__ import annotations

import re
import subprocess

from breedops.settings import project_root

ARCHITECTURE = project_root() / "docs" / "ARCHITECTURE.md"
CITATION = re.compile(r"\bcontract[ -](\d+)\b", re.IGNORECASE)
SELF = "tests/review/test_architecture_doc.py"
HEADING = re.compile(r"^### Contract (\d+): \S", re.MULTILINE)


def contracts_defined(text: str) -> set[int]:
    return {int(n) for n in HEADING.findall(text)}


def unresolved_citations(files: dict[str, str], defined: set[int]) -> list[str]:
    """`path:line: contract N` for each citation of a contract that `defined` lacks."""
    missing = []
    for path, text in files.items():
        for number, line in enumerate(text.splitlines(), 1):
            missing += [f"{path}:{number}: contract {n}" for n in CITATION.findall(line)
                        if int(n) not in defined]
    return missing


def _tracked_text_files() -> dict[str, str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=project_root(), check=True,
                            capture_output=True).stdout.decode().split("\0")
    files = {}
    # This file cites made-up contracts on purpose.
    for name in filter(lambda n: n and n != SELF, listed):
        path = project_root() / name
        if path.suffix in {".png", ".zip", ".csv", ".json"} or not path.is_file():
            continue
        files[name] = path.read_text(errors="replace")
    return files


def test_every_cited_contract_is_defined():
    defined = contracts_defined(ARCHITECTURE.read_text())
    assert defined == set(range(1, len(defined) + 1)), f"contracts numbered 1..n: {defined}"
    files = _tracked_text_files()
    assert "src/breedops/jobs/metrics.py" in files
    assert unresolved_citations(files, defined) == []


def test_no_citation_points_outside_the_repository():
    # The design notes the contracts came from are not in the repository.
    outside = re.compile(r"\bDESIGN(\.md| contract)")
    cited = [f"{path}: {line.strip()}" for path, text in _tracked_text_files().items()
             for line in text.splitlines() if outside.search(line)]
    assert cited == []


def test_a_citation_of_an_undefined_contract_is_reported():
    files = {"a.py": '"""Layout (contract 3)."""\n# see contract-12\n'}
    assert unresolved_citations(files, {1, 2, 3}) == ["a.py:2: contract 12"]
