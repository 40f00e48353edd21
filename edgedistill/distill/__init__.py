"""The student stages: training (train, config, select, student, train_data), strip, the model card."""
