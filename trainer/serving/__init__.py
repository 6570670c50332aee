"""Trained generators applied to image files: translators (the signature `export` saves), and reading and writing
images on any filesystem. Imports the model, never the run."""
