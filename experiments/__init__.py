"""The experiment layer above mlp_core: the Hydra harness, compare, bench and export."""
