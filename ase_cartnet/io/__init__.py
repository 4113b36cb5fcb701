"""Files: CIFs with ADPs, checkpoints (the model registry), datasets, atomic writes."""
