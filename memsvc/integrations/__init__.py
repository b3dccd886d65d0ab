"""Adapters to agent frameworks (optional extras): each imports its framework only when used."""
