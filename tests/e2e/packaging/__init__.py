"""
The distribution suite: ``make dist``'s check (scripts/check_dist.py) and the built wheel installed as users install
it. The built-wheel test runs only when ``ITNIO_DIST_TESTS=1`` (``make test-dist`` sets it, after ``make dist``).
"""
