"""dermbench-zoo: the classifier zoo of Bilyk et al., behind the autoencoder gate."""
