"""checks: how a test script counts what it checked, shared by the
integration tests (re-exported by emberd_fixture) and the image tests
(test/image/*.py), which do not load the gRPC fixture. No dependencies."""


def require(cond, what):
    """The check of a test that stops at its first failure: raises
    AssertionError(what) unless cond."""
    if not cond:
        raise AssertionError(what)


class Checks:
    """Counted checks of a test that goes on after a failure (one per test
    process): check(cond, what) prints "ok   what" or "FAIL what", counts it and
    returns cond; summary() prints the failures and the counts and returns the
    exit code (1 when any check failed)."""

    def __init__(self):
        self.passed = 0
        self.failures = []

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
        print("ok   " if cond else "FAIL ", what, flush=True)
        return cond

    @property
    def failed(self):
        return len(self.failures)

    def summary(self):
        for f in self.failures:
            print("failed:", f)
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failures else 0
