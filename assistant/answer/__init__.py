"""Answerers: turn retrieved passages into a cited answer (extractive by default)."""
