"""Stage bodies: what each pipeline stage computes, given its plan, config and upstream.

Each module exposes ``MODULES`` (the repo-relative source whose hash is part of the stage's
content address) and functions that read upstream manifests and write into ``plan.dir``,
publishing the manifest last. No Prefect here: ``tasks/`` wraps these in cached tasks and
``flows/`` wires them together.
"""
