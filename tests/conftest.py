import os

import pytest
from hypothesis import settings

from tests import oracle as _oracle

IN_CI = os.environ.get("CI", "").lower() == "true"

# In CI the property tests run a fixed set of examples (the same on every run),
# so a run's result does not depend on luck; locally they explore at random.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if IN_CI:
    settings.load_profile("ci")


def skip_or_fail(reason: str) -> None:
    """Skip an interop test where the oracle is missing; in CI that is a failure."""
    if IN_CI:
        pytest.fail(f"interop test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def oracle():
    """A running lua5.4 process with Prosody's modules (see tests/oracle.py)."""
    reason = _oracle.missing()
    if reason:
        skip_or_fail(reason)
    o = _oracle.Oracle()
    yield o
    o.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CI=true, an interop test that was skipped for any reason fails the run."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("interop"):
        report.outcome = "failed"
        report.longrepr = f"interop test skipped in CI: {report.longrepr}"


@pytest.fixture
def demo_data(tmp_path):
    """A writable copy of fixtures/demo (accounts made by real prosodyctl)."""
    from tests.live_server import demo_copy

    return demo_copy(tmp_path)


@pytest.fixture
def server(demo_data):
    """The real ``prosody-store serve`` on ``demo_data`` (admin@localhost is --admin)."""
    from tests.live_server import LiveServer

    with LiveServer(demo_data) as live:
        yield live
