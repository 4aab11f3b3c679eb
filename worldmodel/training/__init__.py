"""What both trainers (VAE and memory model) share.

- :mod:`~worldmodel.training.loop`: the epoch loop a trainer subclasses (:class:`~worldmodel.training.loop.Trainer`);
- :mod:`~worldmodel.training.run`: run directories, resume state, counters, metrics, the schedule, the NaN guard;
- :mod:`~worldmodel.training.prefetch`: batches of frames gathered in a background thread;
- :mod:`~worldmodel.training.distributed`: DistributedDataParallel plumbing.
"""
