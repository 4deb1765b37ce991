"""mlp_core: a hand-written MLP on plain PyTorch tensors, every forward and backward our own."""
