"""Fuzzing of every parser and decoder that takes outside input.

``targets`` names each entry point and the one error family it may raise for bad
input; ``seeds`` builds valid inputs with the project's own encoders. Each
``python -m benchmarks.fuzz.<target>`` is an atheris (libFuzzer) harness, ``run``
drives them all and prints the counts; ``tests/fuzz`` replays the same targets
under Hypothesis, briefly, in the suite.
"""
