"""The atheris (libFuzzer) main shared by every ``python -m benchmarks.fuzz.<target>``.

Arguments are libFuzzer's (``-atheris_runs=N``, ``-timeout=1``, a corpus directory);
without a corpus directory, one for the target under the temporary directory is
seeded from ``seeds`` and used. A target's documented error is swallowed; anything
else propagates, and libFuzzer reports it as a crash with the input that caused it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

# outside the work tree: a corpus grows to thousands of files that are not source
CORPUS = Path(tempfile.gettempdir()) / "idres-fuzz" / "corpus"


def seed_corpus(name: str) -> Path:
    """The target's corpus directory, holding at least every seed."""
    from benchmarks.fuzz.seeds import SEEDS

    where = CORPUS / name
    where.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS[name]():
        (where / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return where


def main(name: str, argv: list[str] | None = None) -> None:
    import atheris  # only the long run needs it; the suite replays targets under Hypothesis

    # coverage is recorded only in code imported inside this block: the project's
    # packages must not be imported before it
    with atheris.instrument_imports(include=["schemas", "registry", "resolver", "sync"]):
        from benchmarks.fuzz.seeds import SEEDS
        from benchmarks.fuzz.targets import MAX_INPUT, TARGETS, is_bad_input

        for seed in SEEDS[name]():  # imports what the target uses, here, instrumented
            TARGETS[name].call(seed)
    target = TARGETS[name]
    args = list(sys.argv if argv is None else argv)
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(seed_corpus(name)))
    if not any(a.startswith("-max_len=") for a in args):
        args.append(f"-max_len={MAX_INPUT}")
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=1")  # an input that takes over a second is a hang

    # libFuzzer exits at the first crash without saying how many inputs ran before it;
    # the runner reads the count from this file (exact at a crash, within 1000 at a hang)
    count_file = os.environ.get("IDRES_FUZZ_COUNT")
    executed = known = 0
    # crashes already reported and awaiting their fix ("Type: message" substrings, one
    # a line): counted apart, so that a long run goes on looking for new ones
    known_texts = [k for k in os.environ.get("IDRES_FUZZ_KNOWN", "").splitlines() if k]

    def note() -> None:
        if count_file:
            Path(count_file).write_text(f"{executed} {known}")

    # libFuzzer writes the failing input too, but its alarm (-timeout) can end the
    # process first while it unwinds a Python exception: the harness keeps its own copy
    artifacts = os.environ.get("IDRES_FUZZ_ARTIFACTS")

    def keep(data: bytes, exc: BaseException) -> None:
        if artifacts:
            path = Path(artifacts) / f"crash-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            trace = "".join(traceback.format_exception(exc))
            path.with_suffix(".txt").write_text(trace)

    # warnings of ignored delegations and the like are the code working; the lean
    # listener's own failures are logged at ERROR and counted by its target
    logging.getLogger("idres").setLevel(logging.ERROR)

    def one(data: bytes) -> None:
        nonlocal executed, known
        executed += 1
        if executed % 1000 == 0:
            note()
        try:
            target.call(data)
        except Exception as exc:
            if is_bad_input(exc):
                return
            if any(k in f"{type(exc).__name__}: {exc}" for k in known_texts):
                known += 1
                note()
                return
            note()
            keep(data, exc)
            raise

    atheris.Setup(args, one)
    atheris.Fuzz()
