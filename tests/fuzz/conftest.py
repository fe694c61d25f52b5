"""Hypothesis profiles of the fuzz suite.

``fuzz`` (the default, used in CI) is deterministic and small, so that the whole
suite runs in seconds; ``long`` draws many more random examples for a local run:
``python -m pytest tests/fuzz --hypothesis-profile=long``. Neither writes an
example database into the repository. The tests apply the profile themselves
(``fuzz.fuzz_settings``), so the profile of the rest of the suite is left alone.
"""

from hypothesis import HealthCheck, settings

import fuzz

settings.register_profile("fuzz", deadline=None, derandomize=True, database=None, max_examples=50,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("long", deadline=None, database=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def pytest_configure(config):
    # A profile named on the command line wins; otherwise the fuzz tests run the CI profile.
    fuzz.PROFILE = config.getoption("hypothesis_profile", None) or "fuzz"
