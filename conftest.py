"""pytest glue of the checkout: the verification plugin, the one a production session loads (options,
target, read-only enforcement, entry==exit guard, snapshot location). The project's own tests add
their test-only support in tests/conftest.py.
"""

pytest_plugins = ["oneroof.fixtures.plugin"]
