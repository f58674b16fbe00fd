"""Training: configs, the one ``fit()`` loop, the supervised and adversarial steps, DDP."""
