"""pcd_core: Progressive Class-level Distillation, its baselines, models, data and trainer.

pcd_core imports nothing from the service: data flows API -> store -> runner -> pcd_core.
"""

__version__ = "0.1.0"
