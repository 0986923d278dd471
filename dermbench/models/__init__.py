"""Building the model a run trains: a registered architecture or any timm model, initialised as asked."""
