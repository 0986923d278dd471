"""dermbench-medmnist: the MedMNIST benchmark protocol (Yang et al., Scientific Data 2023) as dermbench methods."""
