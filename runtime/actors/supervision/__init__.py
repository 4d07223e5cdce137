"""The supervisor's parts; ``runtime.actors.supervisor`` is the Ray actor that exposes them.

- ``pool``: host actors, placement, watching and revival;
- ``control``: starting and steering instances (every answer decided in the write);
- ``completions``: reads, and waiters woken when hosts report an end;
- ``entities``: where entity types live;
- ``outbox``: delivery of committed signals, unlocks and starts;
- ``timers``: durable timers fired from the store;
- ``core``: their composition, recovery and the control loops.
"""
