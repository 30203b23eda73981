"""`python -m lightning_electra <command> ...`: the one command line (lightning_electra/cli.py)."""

from lightning_electra.cli import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
