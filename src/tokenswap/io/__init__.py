"""Input and output at the edge: models, corpora and atomic saves."""
