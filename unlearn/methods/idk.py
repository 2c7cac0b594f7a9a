"""IDK fine-tuning: gradient *descent* on "I don't know"-style answers to the forget questions,
plus the retain term (TOFU's "idk" baseline, Maini et al., 2024):

    minimize c_F L(x_F, y_idk) + c_R L_R,     L = token-mean LM loss over the answer tokens

Each forget question gets one IDK answer, drawn once per run with ``idk_seed`` (TOFU redraws one
per data-loader access) from ``idk_file`` (one answer a line; ``null``: the package's own set,
``unlearn/resources/idk.txt``; TOFU's ``data/idontknow.jsonl`` has the same one-a-line shape).

x is the row's prompt (``MethodContext.encode``). On TOFU it is the question. On MUSE's raw-text
chunks -- a framework-defined extension, MUSE has no IDK baseline -- it is the chunk's first
``prefix_tokens`` tokens (VerbMem's prefix -> continuation setting; at most all but its last) and the
true answer y the rest of the chunk: the IDK sentence is trained as the continuation of the prefix
(``unlearn/benchmarks/muse.py``).
"""
import random
from importlib import resources
from pathlib import Path

from unlearn.losses import lm_loss
from unlearn.methods.base import MethodContext, RetainRegularized, features_batch, register_method


def load_idk_answers(path: str | Path | None = None) -> list[str]:
    text = Path(path).read_text() if path else (resources.files("unlearn") / "resources" / "idk.txt").read_text()
    answers = [line.strip() for line in text.splitlines() if line.strip()]
    if not answers:
        raise ValueError(f"no IDK answers in {path or 'the packaged idk.txt'}")
    return answers


@register_method("idk", forget_task=True)
class IDK(RetainRegularized):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.prefix_tokens = int(cfg.get("prefix_tokens", 32))
        if self.prefix_tokens < 1:
            raise ValueError(f"{cfg['name']} needs prefix_tokens >= 1, got {self.prefix_tokens}")

    def setup(self, ctx: MethodContext) -> None:
        answers = load_idk_answers(self.cfg.get("idk_file"))
        rng = random.Random(int(self.cfg.get("idk_seed", 0)))
        self.idk_answers = [rng.choice(answers) for _ in ctx.forget_rows]
        # idk_features[i] answers forget_rows[i]: a forget batch's ``index`` gathers its IDK batch
        self.idk_features = [ctx.encode(r, a, self.prefix_tokens) for r, a in zip(ctx.forget_rows, self.idk_answers)]
        self.pad_id = ctx.pad_id

    def idk_batch(self, forget_batch):
        return features_batch(self.idk_features, forget_batch["index"], self.pad_id)

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        return lm_loss(model, self.idk_batch(batch))
