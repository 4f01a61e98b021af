"""
Harnesses shared by the test modules: servers, Airflow runs, push builders, fakes and shared fixtures.

Test modules import from here (and from ``tests.dags``), never from one another (``tests/unit/project/
test_tests_layout.py`` checks it). ``tests/README.md`` says which harness to use for what.
"""
