"""Kubernetes manifests for the preprocessing and training jobs, and the code that submits them."""
