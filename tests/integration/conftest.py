"""Session fixture `stack`: the local stack's stack.env values as a dict.

With STACK_ENV=/path/to/stack.env the tests use that running stack (tools/run-tests.sh does
this). Otherwise the session starts its own stack with tools/stack.sh under
<repo>/.local/pytest-stack-<pid>, applies migrations/ to its database, and stops it at the end
(removing that folder unless a test failed).

Every response a test receives from profile-api (through `requests`) is checked against
docs/openapi.yaml (openapi_check.py): a test whose responses break the spec fails in teardown.
"""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_check  # noqa: E402
import support  # noqa: E402

STACK_SH = support.REPO / "tools" / "stack.sh"

SPEC_VIOLATIONS = openapi_check.Recorder()
openapi_check.install(SPEC_VIOLATIONS)


def pytest_terminal_summary(terminalreporter):
    if SPEC_VIOLATIONS.checked:
        terminalreporter.write_line(
            f"openapi: {SPEC_VIOLATIONS.checked} profile-api responses checked against "
            "docs/openapi.yaml")


@pytest.fixture(autouse=True)
def responses_match_openapi():
    """Fails the test if a profile-api response it received does not match docs/openapi.yaml."""
    SPEC_VIOLATIONS.take()
    yield
    found = SPEC_VIOLATIONS.take()
    if found:
        shown = "\n".join(sorted(set(found))[:20])
        pytest.fail(f"{len(found)} response(s) do not match docs/openapi.yaml:\n{shown}",
                    pytrace=False)


@pytest.fixture(scope="session")
def stack(request):
    env_path = os.environ.get("STACK_ENV")
    if env_path:
        yield support.load_stack_env(env_path)
        return

    stack_dir = support.REPO / ".local" / f"pytest-stack-{os.getpid()}"
    env = dict(os.environ, KAFKA_MOCK_BIN=support.bin_path("kafka-mock"),
               STACK_REDIS_CLUSTER=os.environ.get("STACK_REDIS_CLUSTER", "1"))
    r = subprocess.run([str(STACK_SH), "start", str(stack_dir), "--pgbouncer"], env=env,
                       capture_output=True,
                       text=True, timeout=180)
    if r.returncode != 0:
        shutil.rmtree(stack_dir, ignore_errors=True)  # start already stopped what it started
        pytest.fail(f"tools/stack.sh start failed ({r.returncode}):\n{r.stdout}{r.stderr}",
                    pytrace=False)
    try:
        values = support.load_stack_env(stack_dir / "stack.env")
        support.apply_migrations(values["DATABASE_URL"])
        yield values
    finally:
        subprocess.run([str(STACK_SH), "stop", str(stack_dir)], env=env, capture_output=True,
                       timeout=120)
        if request.session.testsfailed == 0:
            shutil.rmtree(stack_dir, ignore_errors=True)
        else:
            print(f"\nstack logs kept in {stack_dir}")


# The event contract: every Kafka record a test consumes through test_relay_e2e's Collector is
# checked against the JSON Schema its ce_dataschema names (tests/event_schemas.py); a test
# during which one failed fails here, after its own teardown closed the collectors.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import event_schemas  # noqa: E402


@pytest.fixture(autouse=True)
def events_keep_their_schemas():
    start = len(event_schemas.problems_seen)
    yield
    bad = event_schemas.problems_seen[start:]
    assert not bad, f"{len(bad)} consumed event(s) broke their schema: {bad[:5]}"
