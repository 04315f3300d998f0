"""The `meter` operator CLI and the local stack behind `make demo`."""
