"""Which errors mean "an actor died" (the run rebuilds the actors and goes on: ``Trainer.recover``) and which
stop the run.

A dead actor's own calls raise Ray's actor errors (``actor_errors``). Its peers can fail first, though: a
ZeRO-3 rank or an engine in the middle of a collective with a rank that was just killed (SIGKILL, Ray's
memory monitor) gets a gloo/NCCL error ("Connection closed by peer"), which reaches the driver as a
``RayTaskError`` from a live actor. ``is_actor_failure`` classifies such an error by asking the actors
themselves: it is an actor failure when one of them no longer answers. A live actor that merely raises
(a bug, a failed sync verification) stays an error that stops the run.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional

log = logging.getLogger("ascl_ray.failures")


def actor_errors() -> tuple:
    """The Ray errors of a dead actor (what ``Trainer.recover`` handles; anything else stops the run)."""
    import ray

    return tuple(e for e in (getattr(ray.exceptions, n, None) for n in
                             ("RayActorError", "ActorDiedError", "ActorUnavailableError", "OutOfMemoryError"))
                 if e is not None)


def group_actors(stack: Any) -> list[tuple[str, Any]]:
    """(name, actor handle) of every learner rank and rollout engine of ``stack`` (the reward pool replaces its
    own dead actors)."""
    if stack is None:
        return []
    groups = (("learner", getattr(getattr(stack, "learners", None), "actors", None)),
              ("rollout", getattr(getattr(stack, "rollout", None), "workers", None)))
    return [(f"{name} {i}", a) for name, actors in groups for i, a in enumerate(actors or [])]


def dead_actors(actors: Iterable[tuple[str, Any]], timeout_s: float = 30.0) -> list[str]:
    """Names of the actors that do not answer a no-op call because they died. One that is only busy (no answer
    within ``timeout_s``, one deadline for all of them) is not counted: its death cannot be told from a long
    call."""
    import ray

    named = [(name, a.__ray_ready__.remote()) for name, a in actors]
    if not named:
        return []
    ready, _ = ray.wait([ref for _, ref in named], num_returns=len(named), timeout=timeout_s)
    done = set(ready)
    dead = []
    for name, ref in named:
        if ref not in done:
            log.warning("%s did not answer within %.0f s (busy?); not counted as dead", name, timeout_s)
            continue
        try:
            ray.get(ref)
        except actor_errors():
            dead.append(name)
    return dead


def is_actor_failure(err: BaseException, dead: Callable[[], list[str]],
                     recoverable: Optional[tuple] = None) -> bool:
    """``err`` is an actor's death: one of Ray's actor errors, or any other error while ``dead()`` names an
    actor that died (a peer's collective failing first). ``dead`` is only called for the second kind."""
    recoverable = actor_errors() if recoverable is None else recoverable
    if isinstance(err, recoverable):
        return True
    names = dead()
    if names:
        log.error("%s: %s died (%s); treated as an actor failure", type(err).__name__, ", ".join(names),
                  str(err).splitlines()[0][:200] if str(err) else "")
        return True
    return False
