"""A local emulator of SLS and CLS consumer groups: signatures, assignment, timeouts, errors, faults."""
