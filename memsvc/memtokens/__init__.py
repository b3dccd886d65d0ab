"""In-model memory tokens: k trained input vectors per memory for a local model (DESIGN section 6)."""
