"""The Trainer's one progress bar, on the user's terminal (console.progress), in place of the Trainer's own
bar and the log dicts it prints; the figures it logged stay in train.json's `log_history`."""

from __future__ import annotations

from transformers import TrainerCallback

from ..console import progress


class TrainingBar(TrainerCallback):
    """Optimizer steps of one training run, with the latest loss and validation accuracy beside them."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None
        self.shown: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = progress(state.max_steps, self.desc, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.shown["loss"] = f"{logs['loss']:.3f}"
        if "eval_accuracy" in logs:
            self.shown["val"] = f"{100 * logs['eval_accuracy']:.1f}%"
        self.bar.set_postfix(self.shown, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
