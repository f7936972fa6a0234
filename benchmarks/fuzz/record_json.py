"""atheris harness of targets.record_json (``python -m benchmarks.fuzz.record_json``)."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("record_json")
