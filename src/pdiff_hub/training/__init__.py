"""Training: collecting checkpoints, the two objectives of p-diff and the trainer loop."""
