"""Above the core: a data folder written, its examples index, the formats in numpy."""
