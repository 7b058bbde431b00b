"""Pictures of a VM's address space and a run's timeline (``pysvm plot``)."""
