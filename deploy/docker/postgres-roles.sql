-- docker-compose only: what a DBA does once per cluster (docs/operations.md, "Database roles"):
-- one role per program, the database owned by the migrations' role. Run by the postgres image
-- on a fresh data volume only (docker-entrypoint-initdb.d), as its superuser `profile`.
-- DEVELOPMENT ONLY passwords, public in the repository.
CREATE ROLE profile_owner LOGIN PASSWORD 'dev-only-password';
CREATE ROLE profile_app LOGIN PASSWORD 'dev-only-password';
CREATE ROLE profile_relay LOGIN PASSWORD 'dev-only-password';
ALTER DATABASE profile OWNER TO profile_owner;
