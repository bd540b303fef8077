"""Data: image datasets (offline built-ins, folders, Hub ids) and the parameter dataset of collected checkpoints."""
