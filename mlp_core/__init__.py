"""mlp_core: a hand-written MLP on plain PyTorch tensors (no autograd, no torch.nn)."""
