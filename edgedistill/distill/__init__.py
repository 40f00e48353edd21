"""The student stages: training (train, select, student, train_data), strip, compress, the model card."""
