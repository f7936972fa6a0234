"""atheris harness of targets.front: ``python -m benchmarks.fuzz.front -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("front")
