"""atheris harness of targets.snapshot: ``python -m benchmarks.fuzz.snapshot -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("snapshot")
