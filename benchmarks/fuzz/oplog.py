"""atheris harness of targets.oplog: ``python -m benchmarks.fuzz.oplog -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("oplog")
