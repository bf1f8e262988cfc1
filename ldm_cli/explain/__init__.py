"""The math made visible: the noise schedule, the forward process, the ELBO, zero-shot
classification by ELBO, and cross-attention maps. Each module computes; plotting.py draws."""
