"""Shared hypothesis settings (fast, deterministic) and the path to core_models.py."""

import pathlib
import sys

from hypothesis import HealthCheck, settings

settings.register_profile(
    "core",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("core")

# Let test modules import the shared schemas in core_models.py (pytest runs in importlib mode).
sys.path.insert(0, str(pathlib.Path(__file__).parent))
