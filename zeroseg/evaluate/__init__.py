"""Scoring classifier heads on stored validation features and masks (no backbone re-run)."""
