"""The reliability and security suite (issue 5): faults, bursts, bad input, secrets and races.

Unlike the rest of ``tests/``, which mirrors the package layout, these tests cut across modules: each
file exercises one property of the whole provider (hook, operators, sensor, trigger) against the emulator.
"""
