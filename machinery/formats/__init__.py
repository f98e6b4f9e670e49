"""Leaves below the core: the files the project writes and other tools share."""
