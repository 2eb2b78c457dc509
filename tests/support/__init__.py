"""Test-only support of the project's own tests: servers, signers, Directus; never loaded by a
production session.
"""
