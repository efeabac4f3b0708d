"""Tests that run full mode under faults: processes killed, Postgres and Redis restarted, and
the database connections the web server holds."""
