"""atheris harness of targets.handle_face:
``python -m benchmarks.fuzz.handle_face -atheris_runs=N``."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("handle")
