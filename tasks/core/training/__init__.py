"""Training: datasets (:mod:`.data`), pluggable losses (:mod:`.losses`) and the one resumable
loop (:mod:`.loop`) that stage 1 (pretraining), stage 2 (fine-tuning) and expert iteration's
rounds all run through. See each module's docstring for its contract."""

from tasks.core.hparams import TrainHParams
from tasks.core.training.data import (
    IGNORE_INDEX,
    Batch,
    DataPosition,
    IndexedDataset,
    PackedLMDataset,
    PromptCompletionDataset,
    TrainError,
)
from tasks.core.training.loop import (
    CHECKPOINT_DIR,
    COMPLETE_MARKER,
    OPTIMIZER_FILE,
    OptimizerState,
    StepMetrics,
    TrainResult,
    evaluate,
    lr_factor,
    plot_losses,
    read_metrics,
    read_optimizer_state,
    train,
)
from tasks.core.training.losses import KLRegularisedNLL, LossSums, NextTokenNLL, TokenLoss

__all__ = [
    "CHECKPOINT_DIR",
    "COMPLETE_MARKER",
    "OPTIMIZER_FILE",
    "OptimizerState",
    "IGNORE_INDEX",
    "Batch",
    "DataPosition",
    "IndexedDataset",
    "KLRegularisedNLL",
    "LossSums",
    "NextTokenNLL",
    "PackedLMDataset",
    "PromptCompletionDataset",
    "StepMetrics",
    "TokenLoss",
    "TrainError",
    "TrainHParams",
    "TrainResult",
    "evaluate",
    "lr_factor",
    "plot_losses",
    "read_metrics",
    "read_optimizer_state",
    "train",
]
