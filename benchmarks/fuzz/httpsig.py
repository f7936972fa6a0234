"""atheris harness of targets.httpsig: ``python -m benchmarks.fuzz.httpsig -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("httpsig")
