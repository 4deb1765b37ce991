"""Parts of experiments/bench.py: train step vs autograd, vs scikit-learn, sweeps, machine info."""
