"""The fuzz suite (hypothesis). Its profiles are registered in ``conftest.py``; each test takes them
through :func:`fuzz_settings`, so that loading them changes no test outside this folder."""

from hypothesis import settings

#: The profile the fuzz tests run under; conftest.py sets it to one named with --hypothesis-profile.
PROFILE = "fuzz"


def fuzz_settings(test):
    """Decorator (under ``@given``): run ``test`` with the fuzz suite's profile."""
    return settings(settings.get_profile(PROFILE))(test)
