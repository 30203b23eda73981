"""Data: the pre-training corpus (read, tokenise, pack, cache) and the GLUE tasks."""
