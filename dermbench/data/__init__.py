"""Datasets: adapters that read published layouts into a records table, splits, the image cache."""
