"""Training: the shared loop, data, losses and tasks per model, model cards, teacher pairs."""
