"""atheris harness of targets.identifiers (``python -m benchmarks.fuzz.identifiers``)."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("identifiers")
