"""atheris harness of targets.directory: ``python -m benchmarks.fuzz.directory -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("directory")
