"""`python -m tests.mutants.serve NAME`: the reference service with one deliberate defect."""

from __future__ import annotations

import os
import sys

from tests.mutants.variants import (
    DRILL_MUTANTS,
    MUTANTS,
    OBSERVABILITY_MUTANTS,
    PROPERTY_MUTANTS,
    SCHEDULE_MUTANTS,
    Mutant,
    PropertyMutant,
)


def main(argv: list[str]) -> None:
    known: dict[str, Mutant | PropertyMutant] = {
        **MUTANTS,
        **OBSERVABILITY_MUTANTS,
        **DRILL_MUTANTS,
        **PROPERTY_MUTANTS,
        **SCHEDULE_MUTANTS,
    }
    if len(argv) != 1 or argv[0] not in known:
        sys.exit(f"usage: python -m tests.mutants.serve {{{','.join(known)}}}")
    mutant = known[argv[0]]
    os.environ.update(mutant.env)
    if mutant.patch is not None:
        mutant.patch()
    from reference.service.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main(sys.argv[1:])
