"""Stand-in for absl (see ../README.md)."""
