"""Sub-commands of ``cds-service``; each module has ``register(subparsers)``."""
