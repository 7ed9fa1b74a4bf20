"""The gateway over real HTTP against a real database."""

import pytest

# Before any test module imports it: pytest rewrites the asserts of the shared response macros.
pytest.register_assert_rewrite("tests.http.checklist")
