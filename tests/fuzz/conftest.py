"""Hypothesis profiles of the fuzz suite.

``fuzz`` (the default, used in CI) is deterministic and small, so that the whole
suite runs in well under a minute; ``long`` draws many more examples for a local
run: ``python -m pytest tests/fuzz --hypothesis-profile=long``. Neither writes an
example database into the repository.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz", deadline=None, derandomize=True, database=None, max_examples=20,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("long", deadline=None, database=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def pytest_configure(config):
    # A profile named on the command line wins; otherwise the fuzz suite runs the CI profile.
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("fuzz")
