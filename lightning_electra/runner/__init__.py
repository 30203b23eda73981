"""The runner: configs from files, run identity, one run, a sweep, export. Above the library, below the CLI."""
