"""The peers' own table cases (operator-registry v1.73.0, IIB main) translated into indexflow inputs.

Each test names the peer file and line its facts (inputs, expected outcome, message) come from;
the code is ours. Counts (translated / passing / not translatable and why) are in tests/peers/README.md.
"""
