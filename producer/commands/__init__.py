"""The `qfleet` subcommands, one module per area."""
