"""Cluster launch helpers for ascl-ray: submit training as a Ray job, run a private local head.

    python -m launch.local_cluster start|status|env|stop   a loopback-only Ray head of our own
    python -m launch.submit [options] [hydra overrides]    `ascl-ray train cluster=ray_job ...` as a Ray job

See launch/README.md.
"""
