"""The docs name the tests that back their promises (docs/reliability.md above all): each test
named there exists, so a renamed or deleted test cannot leave a promise standing on nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"`(?:tests/)?(test_\w+\.py)::(\w+)")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_the_docs_cite_exists():
    cited = [(doc.name, *m.groups()) for doc in [ROOT / "README.md", ROOT / "BENCHMARKS.md",
                                                   *sorted((ROOT / "docs").glob("*.md"))]
             for m in CITED.finditer(doc.read_text())]
    assert len(cited) >= 40  # docs/reliability.md alone cites more: the pattern still finds them
    missing = [f"{doc}: {file}::{name}" for doc, file, name in cited
               if not (ROOT / "tests" / file).is_file() or name not in defined_tests(ROOT / "tests" / file)]
    assert missing == []
