"""atheris harness of targets.chain: ``python -m benchmarks.fuzz.chain -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("chain")
