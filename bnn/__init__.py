"""Binary neural networks: layers, models, datasets, baselines, training."""
