"""The project's own tests: pytester and the test-only support (servers, signers, Directus). A
session of the verification suite never loads this file.
"""

pytest_plugins = ["pytester", "tests.support.testing", "tests.support.directus"]
