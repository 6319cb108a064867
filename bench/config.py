"""The three run sizes: ``tiny`` (smoke test), ``quick`` (the default) and ``full``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QualityConfig:
    epochs: int = 30
    seeds: tuple[int, ...] = (0,)
    hidden: tuple[int, ...] = (64, 64)
    batch_size: int = 32
    learning_rate: float = 1e-3
    test_fraction: float = 0.25
    split_seed: int = 0
    ece_bins: int = 15
    target_accuracy: float = 0.95
    label_smoothing: float = 0.1
    focal_gamma: float = 2.0
    # Distillation: a larger teacher trained on every training digit; the student (`hidden`)
    # sees only `student_train_size` of them (a fixed stratified subset), so the teacher's soft
    # targets carry what the student's few labels do not.
    teacher_hidden: tuple[int, ...] = (128, 128)
    student_train_size: int = 200
    student_epochs: int = 100
    distill_seeds: tuple[int, ...] = (0, 1, 2)
    # Student loss = (1 - distill_weight) * CE(labels) + distill_weight * T² D(teacher, student).
    distill_weight: float = 0.5
    # T of every distillation row but the first (forward KL at T = 1).
    distill_temperature: float = 4.0
    # Two-tower retrieval: top and bottom halves of each digit, towers 32-hidden-dim.
    retrieval_hidden: tuple[int, ...] = (128,)
    retrieval_dim: int = 32
    retrieval_batch: int = 128
    retrieval_epochs: int = 60
    retrieval_seeds: tuple[int, ...] = (0, 1, 2)
    # CTC on strips of 3-6 digits: strips built from training / test digits, an MLP per frame.
    strips_train: int = 3000
    strips_test: int = 500
    strips_hidden: tuple[int, ...] = (128,)
    strips_batch: int = 64
    strips_learning_rate: float = 3e-3
    strips_epochs: int = 30
    strips_seeds: tuple[int, ...] = (0,)
    # Sparse outputs and margins: the MLP (`hidden`) with CE, sparsemax, 1.5-entmax and hinge.
    sparse_epochs: int = 30
    sparse_seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class SpeedConfig:
    # (N, V) shapes of the integer-label cross-entropy grid, each in every dtype of `dtypes`.
    ce_shapes: tuple[tuple[int, int], ...] = ((2048, 1024), (2048, 8192), (2048, 32768))
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    # (N, V) shapes for soft-target cross-entropy, each in every dtype of `dtypes`.
    soft_shapes: tuple[tuple[int, int], ...] = ((2048, 8192),)
    # (N, D, V) of the fused linear + cross-entropy comparison (float32).
    fused: tuple[int, int, int] = (2048, 256, 8192)
    # (N, D = Dt, V) of the fused linear + distillation comparison, in every dtype of `dtypes`.
    distillation: tuple[int, int, int] = (2048, 256, 8192)
    # Batch sizes B of the contrastive comparison (timed, then only compiled for memory), D.
    contrastive: tuple[int, ...] = (1024, 2048, 4096)
    contrastive_memory: tuple[int, ...] = (16384,)
    contrastive_dim: int = 128
    # (B, T, K, N) of the CTC comparison, float32.
    ctc: tuple[tuple[int, int, int, int], ...] = ((16, 500, 64, 100), (64, 150, 1000, 40))
    repeats: int = 7
    fused_repeats: int = 5
    torch: bool = True


@dataclass(frozen=True)
class Config:
    name: str
    quality: QualityConfig = field(default_factory=QualityConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)


PRESETS = {
    "tiny": Config(
        "tiny",
        QualityConfig(
            epochs=2,
            hidden=(32,),
            student_epochs=2,
            distill_seeds=(0,),
            retrieval_epochs=2,
            retrieval_seeds=(0,),
            strips_train=128,
            strips_test=64,
            strips_epochs=2,
            sparse_epochs=2,
            sparse_seeds=(0,),
        ),
        SpeedConfig(
            ce_shapes=((128, 512),),
            soft_shapes=((128, 512),),
            fused=(64, 16, 256),
            distillation=(64, 16, 256),
            contrastive=(64,),
            contrastive_memory=(128,),
            contrastive_dim=16,
            ctc=((2, 20, 8, 5),),
            repeats=2,
            fused_repeats=2,
        ),
    ),
    "quick": Config("quick"),
    "full": Config(
        "full",
        QualityConfig(
            epochs=100,
            seeds=(0, 1, 2),
            student_epochs=200,
            distill_seeds=tuple(range(5)),
            retrieval_epochs=120,
            retrieval_seeds=tuple(range(5)),
            strips_epochs=60,
            strips_seeds=(0, 1, 2),
            sparse_epochs=100,
            sparse_seeds=tuple(range(5)),
        ),
        SpeedConfig(
            ce_shapes=((8192, 1000), (2048, 32768), (512, 131072), (4096, 32768)),
            soft_shapes=((8192, 1000), (2048, 32768), (512, 131072)),
            fused=(8192, 256, 32768),
            distillation=(8192, 256, 32768),
            contrastive=(1024, 2048, 4096, 8192),
            contrastive_memory=(16384, 32768),
            repeats=11,
            fused_repeats=3,
        ),
    ),
}
