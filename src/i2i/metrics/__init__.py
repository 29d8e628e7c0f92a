"""P-IDS / U-IDS and FID features."""
