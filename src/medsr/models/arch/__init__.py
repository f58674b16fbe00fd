"""Network architectures, one module each; every module here is imported by ``models.registry``
and registers its network with ``@architecture(name, scales=...)``."""
