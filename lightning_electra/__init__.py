"""lightning_electra: ELECTRA-style pre-training ablations as PyTorch Lightning modules."""

__version__ = "0.1.0"
