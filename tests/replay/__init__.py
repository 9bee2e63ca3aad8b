"""Recorded provider responses (one folder per vendor) replayed through the gateway and compared
with what each vendor's official SDK makes of the same bytes (tests/test_replay_*.py)."""
