"""What the ratification page in Directus shows of the release package (extensions/oneroof-ratify):
its proposal, SHA-256, levels, what each tier writes and the ownership map, with the form of the
statement the approver signs; written as JSON into the extension's source before it is built, so
the page shows the package it was built for and refuses to ratify a proposal that names another.

    python3 -m oneroof.executor.ratify [PACKAGE_DIR] > extensions/oneroof-ratify/src/package-summary.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from oneroof.core import package, signatures
from oneroof.executor.approvals import ownership_map


def package_summary(pkg: package.Package) -> dict[str, Any]:
    """The package as the page shows it: plain, sorted data."""
    return {
        "name": pkg.name,
        "version": pkg.version,
        "proposal": pkg.proposal,
        "sha256": pkg.sha256,
        "levels": list(pkg.levels),
        "tiers": [
            {"number": t.number, "name": t.name, "writes": sorted(t.deploy_relations.written)} for t in pkg.tiers
        ],
        "ownership": {unit: sorted(names) for unit, names in sorted(ownership_map(pkg).items())},
        "statement_template": statement_template(),
    }


def statement_template() -> dict[str, Any]:
    """The statement document with "<field>" for each field of signatures.Statement: the page fills
    them in, so it signs the statement format of the oneroof it was built with.
    """
    fields = {f.name: f"<{f.name}>" for f in dataclasses.fields(signatures.Statement)}
    return signatures.Statement(**fields).as_dict()


def main(argv: list[str]) -> int:
    """Print the summary of the package in argv[0] (default: the packaged rollout/)."""
    pkg = package.load(Path(argv[0])) if argv else package.load()
    sys.stdout.write(json.dumps(package_summary(pkg), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
