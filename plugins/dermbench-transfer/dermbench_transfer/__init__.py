"""dermbench-transfer: fine-tuning strategies across datasets (Nedelcu et al.)."""
