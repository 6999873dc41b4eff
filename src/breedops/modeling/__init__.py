"""The model definition shared by training and the inference handler.

This package is copied into every model.tar.gz (`code/breedops/modeling/`), so it imports only
torch, torchvision, PIL and the standard library.
"""
