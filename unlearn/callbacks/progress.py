"""The progress bar of the loop (main process): steps, the task losses and the rate."""
from __future__ import annotations

from tqdm.auto import tqdm

from unlearn.callbacks.base import Callback


class Progress(Callback):
    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def on_train_start(self, state) -> None:
        self.bar = tqdm(total=state.total_steps, desc=self.desc, disable=not state.main)
        self.bar.update(state.step)
        state.stack.callback(self.bar.close)

    def on_step_end(self, state, row) -> None:
        if row.get("diverged"):
            return
        self.bar.update(1)
        losses = {k.split("/")[-1][:6]: f"{v:.3g}" for k, v in row.items() if k.startswith("loss/")}
        self.bar.set_postfix(losses | {"lr": f"{row['lr']:.2e}"})
