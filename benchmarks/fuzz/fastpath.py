"""atheris harness of targets.fastpath: ``python -m benchmarks.fuzz.fastpath -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("fastpath")
