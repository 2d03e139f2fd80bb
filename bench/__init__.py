"""`make bench`: shardbeat's cost per heartbeat, at scale, and at start-up, against the emulator.

Run from the repository root: `python -m bench [--quick] [--only SECTION ...] [--out DIR]`.
Writes DIR/latest.md (the table the README quotes) and DIR/latest.json (every figure).
"""
