"""The options of the built-in stages and batch transforms, apart from their code.

Plain dataclasses without torch, so that listing components (``dermbench list stages -v``,
``dermbench plugins``) imports no deep-learning library; the stages import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dermbench.plugins.options import option


@dataclass(frozen=True)
class VAEPretrainOptions:
    latent_dim: int = option(256, "size of mu and of log-variance")
    optimizer: str = option("", "a registered optimizer (empty: the recipe's, else the default one)")
    lr: float = option(1e-4, "learning rate of the optimizer (the paper prints 1e-8: see the method's docs)")
    weight_decay: float = option(0.05, "weight decay")
    batch_size: int = option(0, "images per batch (0: the run's batch size)")
    kl_schedule: str = option("linear", "KL warm-up: linear | cyclical | constant")
    warmup_fraction: float = option(0.5, "linear: fraction of the steps over which beta rises to beta_max")
    cycles: int = option(4, "cyclical: number of cycles")
    cycle_ratio: float = option(0.5, "cyclical: fraction of each cycle over which beta rises")
    beta_max: float = option(1.0, "largest KL weight")
    decoder_blocks: int = option(0, "ConvNeXt blocks per decoder stage (0: as many as the encoder stage)")
    augment: str = option("flips", "augmentation of the pretraining images: none | flips | standard")
    pretrain_seed: int = option(0, "seed of the pretraining (apart from the run's seed)")
    use_train: bool = option(True, "pretrain on the run's training split (plus any --pretrain-data)")
    encoder: str = option("", "key of a stored encoder to use instead of pretraining (must exist)")
    store: str = option("", "store folder (empty: <results folder>/pretrained)")
    grid: int = option(8, "images in the reconstruction grid")


@dataclass(frozen=True)
class SupervisedOptions:
    backbone_lr_scale: float = field(
        default=1.0, metadata={"help": "lr of all but the classifier = lr x this"}
    )
    layer_lr_min_scale: float = option(
        1.0,
        "layer-wise learning rates over the block map: geometric from lr x this (the stem and lowest block) "
        "up to lr (the head); 1: off",
    )
    freeze: str = field(default="none", metadata={"help": "none | backbone (train the classifier only)"})
    train_last_stages: int = field(
        default=0,
        metadata={"help": "with freeze=backbone: the last N feature stages train too (0: none)"},
    )
    grad_clip: float | None = None
    unfreeze_every: int = field(
        default=0,
        metadata={
            "help": "frozen-block schedule: the head alone, then one more block from the top every N epochs (0: off)"
        },
    )
    blocks: str = field(
        default="auto",
        metadata={"help": "block map of the schedule: auto | stages | MODULE[+MODULE],... top first"},
    )
    reset_head: bool = field(
        default=False, metadata={"help": "re-initialise the classifier when the stage starts"}
    )
    batch_transform: str = field(default="", metadata={"help": "a batch transform, e.g. mixup or cutmix"})
    compile: str = option(
        "",
        "torch.compile the trained network with this backend: inductor (the compiler; worth it on CUDA "
        "for long runs, the first steps compile), eager or aot_eager (checks); empty: off",
    )


@dataclass(frozen=True)
class MixupOptions:
    alpha: float = field(default=0.2, metadata={"help": "Beta(alpha, alpha) of the mixing weight"})
    p: float = field(default=1.0, metadata={"help": "probability that a batch is mixed"})


@dataclass(frozen=True)
class CutMixOptions:
    alpha: float = field(default=1.0, metadata={"help": "Beta(alpha, alpha) of the kept area"})
    p: float = field(default=1.0, metadata={"help": "probability that a batch is mixed"})
