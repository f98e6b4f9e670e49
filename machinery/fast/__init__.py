"""Leaves below the core: numpy twins of two plain loops in the core (tested equal)."""
