"""Lesion segmentation: binary-mask metrics, mask adapters, synthetic composites and models."""
