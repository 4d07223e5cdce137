"""A host's parts; ``runtime.actors.hosts`` is the Ray actor that composes them.

- ``steps``: from an engine step to the checkpoint a host commits (pure);
- ``dispatch``: sending committed actions, and handing their results back.
"""
