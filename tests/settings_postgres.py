"""The in-process test settings on PostgreSQL, for a test that reruns itself there in a child pytest
(tests/test_fuzz.py): ``WSGATEWAY_TEST_DATABASE_URL`` names a database its user may create a test
database next to."""

import os

import dj_database_url

from tests.settings import *  # noqa: F403

# conn_max_age: keep the connection across the trips to the database thread, as a production site
# would; opening one for every trip was a third of the fuzz's time.
DATABASES = {"default": dj_database_url.parse(os.environ["WSGATEWAY_TEST_DATABASE_URL"], conn_max_age=60)}
