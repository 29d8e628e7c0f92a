"""Data loading: datasets, transforms and inpainting masks."""
