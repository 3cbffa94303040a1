"""Root conftest: Hypothesis profiles for the project's tests.

``HYPOTHESIS_PROFILE=ci`` (set by .ci/run) derandomizes runs so CI is reproducible; ``dev`` is
the default for local runs.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
