"""pytest glue of oneroof: the verification plugin (options, target, read-only enforcement,
entry==exit guard, snapshot location) and the fixtures of the project's own tests."""

pytest_plugins = ["pytester", "fixtures.plugin", "fixtures.testing", "fixtures.directus"]
