"""Models in pure torch, one file per paper: tensors in, tensors out (no ASE, files, losses)."""
