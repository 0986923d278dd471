"""Class-imbalance losses for dermbench: LMF loss (Sadi et al.) and the baselines it is compared with.

The plugin module is :mod:`dermbench_imbalance.plugin` (the ``imbalance`` entry point); the loss
modules themselves live in :mod:`dermbench_imbalance.losses` and can be used without dermbench's
registries.
"""

__version__ = "0.1.0"
