"""Execution engines beyond the local thread pool (optional; ``pip install autoevol[ray]``).

The Ray engine lives in :mod:`autoevol.engines.ray_engine`; importing this package does not import Ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_ray_evolve", "ray_available"]


def ray_available() -> bool:
    """Whether the optional ``ray[data]`` dependency is installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray_evolve(*args: Any, **kwargs: Any) -> Any:
    """Run an evolve job on Ray; see :func:`autoevol.engines.ray_engine.run_ray_evolve`."""
    from autoevol.engines.ray_engine import run_ray_evolve as run

    return run(*args, **kwargs)
