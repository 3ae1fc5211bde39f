"""checks: how a test script counts what it checked and runs its test functions, shared by the
integration tests (re-exported by emberd_fixture) and the image tests
(test/image/*.py), which do not load the gRPC fixture. No dependencies."""


import sys
import time
import traceback


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


class Suite:
    """Test functions run in the order they were registered: @suite.test
    registers one; run(only) runs those whose name holds one of the `only`
    substrings (all when empty), prints "PASS name (s)" or "FAIL name" and the
    traceback, calls on_fail() after each failure, and returns (passed, failed)."""

    def __init__(self):
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def run(self, only=(), on_fail=None):
        passed = failed = 0
        for fn in self.tests:
            if only and not any(o in fn.__name__ for o in only):
                continue
            t = time.monotonic()
            try:
                fn()
                passed += 1
                print("PASS %s (%.1f s)" % (fn.__name__, time.monotonic() - t), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s" % fn.__name__, flush=True)
                traceback.print_exc()
                if on_fail is not None:
                    on_fail()
                sys.stdout.flush()
        return passed, failed
