"""Perception: face tracking, audio features, speech recognition, text embedding."""
