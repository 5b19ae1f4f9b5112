"""Training, export and evaluation of the plant-health model (needs the training venv)."""
