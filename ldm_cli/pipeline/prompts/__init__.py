"""Prompt weights and tags, the text encoder's conditioning."""
