"""dermbench plugin: the self-supervised VAE pretraining study of Matas et al."""
