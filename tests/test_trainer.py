"""The Trainer, driven by a tiny fake task (a line fitted by AdamW): interrupts at every kind of point,
exact resume, the two checkpoint formats written before the Trainer, best-so-far, time limit, errors."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from conftest import CtrlC
from torch import Tensor, nn

from labformer import io
from labformer.training.callbacks import Callback
from labformer.training.optim import Schedule, build_optimizer
from labformer.training.progress import Progress
from labformer.training.trainer import Trainer


class LineTask:
    """Fits y = 3x - 1 from noisy batches drawn from one seeded stream; validation is a fixed set."""

    kind, monitor, maximize, unit = "line", "val_loss", False, "step"

    def __init__(
        self, total_steps: int = 20, eval_every: int = 5, nan_at: int | None = None, sum_name: str = "abs_error"
    ) -> None:
        self.sums = (sum_name,)
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        self.batch_size, self.total_steps, self.eval_every = 8, total_steps, eval_every
        self.batches = torch.Generator().manual_seed(1)
        self.nan_at, self.on_loss = nan_at, None  # on_loss(step): a hook inside a step
        self.step = 0

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        self.step = step
        x = torch.randn(self.batch_size, 1, generator=self.batches)
        return x, 3 * x - 1 + 0.1 * torch.randn(self.batch_size, 1, generator=self.batches)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, list[Tensor]]:
        if self.on_loss is not None:
            self.on_loss(self.step)
        prediction = model(x)
        loss = F.mse_loss(prediction, y) * (math.nan if self.step == self.nan_at else 1.0)
        return loss, [(prediction - y).abs().sum()]

    def evaluate(self, progress: Progress) -> dict[str, float]:
        x = torch.linspace(-2, 2, 33)[:, None]
        with torch.no_grad():
            val_loss = F.mse_loss(self.model(x), 3 * x - 1).item()
        running = progress.running
        return {
            "step": progress.step,
            "loss": running["loss_sum"] / running["count"],
            self.sums[0]: running[self.sums[0]] / running["count"],
            "val_loss": val_loss,
            "lr": progress.lr,
        }

    def describe(self, row: dict[str, float]) -> str:
        return f"step {row['step']}: val {row['val_loss']:.4f}"

    def span(self, step: int) -> tuple[str, int, int]:
        return "line", 0, self.total_steps

    def postfix(self, running: dict[str, float]) -> dict[str, str]:
        return {}

    def where(self, step: int) -> str:
        return f"step {step + 1}"

    def stream_state(self, step: int) -> dict[str, Tensor]:
        return {"rng.batches": self.batches.get_state()}

    def restore_stream(self, step: int, tensors: dict[str, Tensor]) -> None:
        self.batches.set_state(tensors["rng.batches"])

    def finish(self, trainer: Trainer) -> dict[str, float]:
        return {"val_loss": trainer.progress.best, "steps": trainer.progress.step}

    def summary(self, metrics: dict) -> str:
        return f"val {metrics['val_loss']:.4f}"


def trainer(run_dir, task: LineTask, callbacks=(), **settings) -> Trainer:
    run_dir.mkdir(exist_ok=True)
    schedule = Schedule(1e-2, task.total_steps, 3, "cosine", 0.1)
    optimizer = build_optimizer(task.model, 1e-2, 0.01)
    return Trainer(
        task, optimizer, schedule, run_dir=run_dir, device=torch.device("cpu"), callbacks=callbacks, **settings
    )


def without_seconds(rows):
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def run(run_dir, task=None, callbacks=(), resume=False, **settings):
    t = trainer(run_dir, task or LineTask(), callbacks, **settings)
    if resume:
        t.restore()
    t.fit()
    return t, t.finish()


@pytest.fixture
def full(tmp_path):
    return run(tmp_path / "full", grad_clip=1.0)


def assert_same_run(a: Trainer, b: Trainer) -> None:
    assert without_seconds(a.history.rows) == without_seconds(b.history.rows)
    for name, value in a.task.model.state_dict().items():
        assert torch.equal(value, b.task.model.state_dict()[name]), name
    assert a.progress.step == b.progress.step and a.progress.best == b.progress.best


@pytest.mark.parametrize(
    "cut",
    [CtrlC(step=7), CtrlC(step=10), CtrlC(evaluation=2), CtrlC(evaluation=4)],
    ids=["mid-interval", "at-an-evaluation-step", "during-an-evaluation", "during-the-last-evaluation"],
)
def test_an_interrupted_run_resumes_exactly(tmp_path, full, cut):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callbacks=[cut], grad_clip=1.0)
    resumed, metrics = run(tmp_path / "cut", resume=True, grad_clip=1.0)
    assert_same_run(full[0], resumed)
    assert metrics["val_loss"] == full[1]["val_loss"]
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["steps"] == 20


def test_ctrl_c_inside_a_step_stops_after_it_and_resumes_exactly(tmp_path, full):
    task = LineTask()
    task.on_loss = lambda step: os.kill(os.getpid(), signal.SIGINT) if step == 6 else None
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", task, grad_clip=1.0)
    state = json.loads(io.read_metadata(tmp_path / "cut" / "checkpoint.safetensors", "checkpoint")["state"])
    assert state["progress"]["step"] == 7  # the step that was running when Ctrl-C came was finished
    resumed, _ = run(tmp_path / "cut", resume=True, grad_clip=1.0)
    assert_same_run(full[0], resumed)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    task = LineTask()
    task.on_loss = lambda step: [os.kill(os.getpid(), signal.SIGINT) for _ in range(2)] if step == 12 else None
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", task)
    state = json.loads(io.read_metadata(tmp_path / "cut" / "checkpoint.safetensors", "checkpoint")["state"])
    assert state["progress"]["step"] == 10  # the evaluation checkpoint; the half-done step 13 is not saved
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back


def test_checkpoint_every_adds_checkpoints_between_evaluations(tmp_path):
    saved = []

    class Watch(Callback):
        def on_step(self, trainer):
            path = trainer.run_dir / "checkpoint.safetensors"
            if path.exists():
                saved.append(json.loads(io.read_metadata(path, "checkpoint")["state"])["progress"]["step"])

    run(tmp_path / "run", callbacks=[Watch()], checkpoint_every=3)
    assert sorted(set(saved)) == [3, 5, 6, 9, 10, 12, 15, 18]  # every 3 steps and at each evaluation


def legacy_meta(progress: Progress, history: list[dict], kind: str, eval_every: int) -> dict:
    """The checkpoint metadata the loops before the Trainer wrote for the same state."""
    if kind == "gpt":
        best = progress.best if progress.best is not None else math.inf
        return {"step": progress.step, "best_val_loss": best, "train_seconds": 1.0, "history": history}
    epoch, step = divmod(progress.step, eval_every)
    sums = {name: progress.running[name] for name in ("loss_sum", "correct", "count")}
    old = {"epoch": epoch, "step": step, "best_val_accuracy": -1.0 if progress.best is None else progress.best}
    return {"progress": {**old, "train_seconds": 1.0, **sums, "epoch_seconds": 0.0}, "history": history}


class CopyCheckpointAt(Callback):
    """Keeps a copy of the checkpoint as it is after step ``step`` - 1, then interrupts."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer):
        if trainer.progress.step == self.step:
            path = trainer.run_dir / "checkpoint.safetensors"
            path.with_suffix(".kept").write_bytes(path.read_bytes())
            raise KeyboardInterrupt


@pytest.mark.parametrize("kind", ["gpt", "vit"])
@pytest.mark.parametrize("step", [6, 10], ids=["mid-interval", "after-an-evaluation"])
def test_checkpoints_written_before_the_trainer_resume_exactly(tmp_path, kind, step):
    def line():  # the ViT loop's running sums were loss_sum, correct and count
        return LineTask(sum_name="correct")

    full, _ = run(tmp_path / "full", line(), grad_clip=1.0)
    cut = CtrlC(step=6) if step == 6 else CopyCheckpointAt(11)  # the checkpoint of step 10
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", line(), callbacks=[cut], grad_clip=1.0)
    path = tmp_path / "cut" / "checkpoint.safetensors"
    if step == 10:
        path.write_bytes(path.with_suffix(".kept").read_bytes())
    tensors, state = io.read_tensors(path, "checkpoint"), json.loads(io.read_metadata(path, "c")["state"])
    progress = Progress(**state["progress"])
    assert progress.step == step
    meta = {**legacy_meta(progress, state["history"], kind, 5), "optimizer": state["optimizer"]}
    io.write_tensors(path, tensors, {"state": json.dumps(meta)})

    resumed = trainer(tmp_path / "cut", line(), grad_clip=1.0)
    resumed.restore()
    assert resumed.progress.step == step and resumed.progress.evaluated_at == 5 * (step // 5)
    resumed.fit()
    ignored = {"seconds"} | ({"loss", "correct"} if kind == "gpt" else set())  # the GPT loop kept no sums
    assert [{k: v for k, v in row.items() if k not in ignored} for row in resumed.history.rows] == [
        {k: v for k, v in row.items() if k not in ignored} for row in full.history.rows
    ]
    for name, value in full.task.model.state_dict().items():
        assert torch.equal(value, resumed.task.model.state_dict()[name]), name


def test_the_best_evaluation_keeps_its_weights(tmp_path):
    t, metrics = run(tmp_path / "run", LineTask(total_steps=40))
    rows = t.history.rows
    best = min(rows, key=lambda row: row["val_loss"])
    assert metrics["val_loss"] == best["val_loss"]
    assert io.read_metadata(tmp_path / "run" / "model.safetensors", "weights")["step"] == str(best["step"])
    assert [row["step"] for row in rows] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_a_loss_that_is_not_finite_stops_with_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"the loss became nan at step 8; lower --lr \(now 0.01\); the last good"):
        run(tmp_path / "run", LineTask(nan_at=7))
    state = json.loads(io.read_metadata(tmp_path / "run" / "checkpoint.safetensors", "checkpoint")["state"])
    assert state["progress"]["step"] == 5


def test_a_time_limit_stops_training_and_evaluates(tmp_path):
    t, metrics = run(tmp_path / "run", time_limit=1e-9)
    assert metrics["steps"] == 1 and [row["step"] for row in t.history.rows] == [1]


def test_stop_from_a_callback(tmp_path):
    class StopAt(Callback):
        def on_step(self, trainer):
            if trainer.progress.step == 3:
                trainer.stop()

    t = trainer(tmp_path / "run", LineTask(), [StopAt()])
    assert t.fit().step == 3


def test_the_schedule_drives_the_optimizer(tmp_path):
    seen = []

    class Rates(Callback):
        def on_step(self, trainer):
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    t, _ = run(tmp_path / "run", callbacks=[Rates()])
    assert seen == [t.schedule.at(step) for step in range(20)]
