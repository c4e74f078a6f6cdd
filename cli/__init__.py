"""The `pgflow` command line (installed as the package `pgflow.cli`)."""
