"""atheris harness of targets.cbor_record (``python -m benchmarks.fuzz.cbor_record``)."""

from benchmarks.fuzz.harness import main

if __name__ == "__main__":
    main("cbor_record")
