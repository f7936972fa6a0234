"""atheris harness of targets.proof: ``python -m benchmarks.fuzz.proof -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("proof")
