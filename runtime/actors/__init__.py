"""The hub's Ray actors and their one seam to Ray.

- ``ray_seam``: every Ray call (typed handles, detached-actor options, errors, retries);
- ``supervisor`` (the actor) and ``supervision`` (its parts: pool, control, completions,
  entities, outbox, timers, core);
- ``hosts`` (the actor) and ``hosting`` (its parts: steps, dispatch); ``entity_host``:
  entities inside a host;
- ``lease``: one live supervisor per hub and store; ``routing``: where an entity lives.
"""
