"""atheris harness of targets.dns_face: ``python -m benchmarks.fuzz.dns_face -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("dns")
