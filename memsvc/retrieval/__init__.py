"""Retrieval: candidate search, fusion and packing candidates into a token-budgeted context."""
