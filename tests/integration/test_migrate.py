"""profile-migrate: Flyway-style runner (common/migrate.c, tools/migrate/main.c).

Each test works on a database of its own (CREATE DATABASE on the stack's server) and, where it
edits migration files, on a copy of migrations/ in a temporary directory.
"""
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

import support

REPO_MIGRATIONS = support.MIGRATIONS_DIR


def repo_versions():
    out = []
    for p in REPO_MIGRATIONS.glob("V*__*.sql"):
        m = re.match(r"V(\d+)__(.+)\.sql$", p.name)
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return sorted(out)


def migrate_env(url, migrations_dir=None, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "MIGRATIONS_DIR", "LOG_LEVEL")}
    if url is not None:
        env["DATABASE_URL"] = url
    if migrations_dir is not None:
        env["MIGRATIONS_DIR"] = str(migrations_dir)
    env.update(extra)
    return env


def run_migrate(url, *args, migrations_dir=None, timeout=120, **extra):
    return subprocess.run([support.bin_path("profile-migrate"), *args],
                          env=migrate_env(url, migrations_dir, **extra),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def log_lines(text):
    """The JSON log lines of a run (anything else, e.g. status output, is skipped)."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def errors(r):
    return [rec["msg"] for rec in log_lines(r.stderr) if rec.get("level") == "error"]


def history(stack, db):
    return support.psql(stack, "SELECT version, name, checksum, applied_at FROM schema_migrations "
                               "ORDER BY version", db=db)


@pytest.fixture
def fresh_db(stack):
    name = "mig_" + uuid.uuid4().hex[:12]
    url = support.new_database(stack, name, migrate=False)
    yield name, url
    support.psql(stack, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mig_copy(tmp_path):
    d = tmp_path / "migrations"
    shutil.copytree(REPO_MIGRATIONS, d)
    return d


def test_applies_all_then_second_run_is_a_noop(stack, fresh_db):
    db, url = fresh_db
    r = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0, r.stderr
    rows = history(stack, db)
    assert [(v, n) for v, n, _, _ in rows] == repo_versions()
    assert all(re.fullmatch(r"[0-9a-f]{64}", c) for _, _, c, _ in rows)
    applied_msgs = [m for m in (rec["msg"] for rec in log_lines(r.stderr)) if m.startswith("applied V")]
    assert len(applied_msgs) == len(repo_versions())

    r2 = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r2.returncode == 0, r2.stderr
    assert history(stack, db) == rows, "a second run must not touch the history"
    msgs = [rec["msg"] for rec in log_lines(r2.stderr)]
    assert not any(m.startswith("applied V") for m in msgs)
    assert any("nothing to apply" in m for m in msgs)
    assert support.psql(stack, "SELECT schema_version()", db=db) == [(repo_versions()[-1][0],)]


def test_checksum_is_sha256_of_the_file(stack, fresh_db):
    import hashlib
    db, url = fresh_db
    assert run_migrate(url, migrations_dir=REPO_MIGRATIONS).returncode == 0
    for version, name, checksum, _ in history(stack, db):
        path = REPO_MIGRATIONS / f"V{version:03d}__{name}.sql"
        assert checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_default_migrations_dir_is_the_repo(stack, fresh_db):
    db, url = fresh_db
    r = run_migrate(url)  # no MIGRATIONS_DIR at all
    assert r.returncode == 0, r.stderr
    assert [(v, n) for v, n, _, _ in history(stack, db)] == repo_versions()


def test_two_runners_at_once_apply_each_version_once(stack, fresh_db, mig_copy, tmp_path):
    db, url = fresh_db
    # A slow last version keeps the first runner busy while the second one starts.
    (mig_copy / "V900__slow.sql").write_text("SELECT pg_sleep(1.5);\n")
    versions = repo_versions() + [(900, "slow")]
    env = migrate_env(url, mig_copy)
    procs = []
    outs = []
    for i in range(2):
        f = open(tmp_path / f"run{i}.log", "w+")
        outs.append(f)
        procs.append(subprocess.Popen([support.bin_path("profile-migrate")], env=env,
                                      stdin=subprocess.DEVNULL, stdout=f, stderr=f))
    codes = [p.wait(timeout=120) for p in procs]
    texts = []
    for f in outs:
        f.seek(0)
        texts.append(f.read())
        f.close()
    assert codes == [0, 0], texts
    rows = history(stack, db)
    assert [(v, n) for v, n, _, _ in rows] == versions
    applied = [m for t in texts for m in (rec["msg"] for rec in log_lines(t))
               if m.startswith("applied V")]
    assert sorted(applied) == sorted(set(applied)), "a version was applied twice"
    assert len(applied) == len(versions)
    waited = [m for t in texts for m in (rec["msg"] for rec in log_lines(t)) if "waiting" in m]
    assert len(waited) == 1, "the second runner should have waited for the lock"


def test_changed_applied_file_is_refused(stack, fresh_db, mig_copy):
    db, url = fresh_db
    assert run_migrate(url, migrations_dir=mig_copy).returncode == 0
    before = history(stack, db)
    v001 = next(mig_copy.glob("V001__*.sql"))
    v001.write_text(v001.read_text() + "\n-- edited after it was applied\n")
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 1, r.stderr
    errs = errors(r)
    assert len(errs) == 1, r.stderr
    assert "changed after it was applied" in errs[0] and v001.name in errs[0]
    assert history(stack, db) == before
    # status shows it too, and fails
    s = run_migrate(url, "status", migrations_dir=mig_copy)
    assert s.returncode == 1
    assert re.search(r"^1\s+changed\s", s.stdout, re.M), s.stdout


# Checksums earlier releases recorded for V001 and V002 before a comment-only edit (a reference
# to a document outside the repository was replaced): common/migrate.c accepts exactly these.
EARLIER_CHECKSUMS = {
    1: "3b2fbd3e8205322c2ccda6749d68f46161ce44dbc9b335444e71e7b0dc1f1a2b",
    2: "2198f23dc078ca8cf281989ce7771979dbc6b41237e1e67a5bcf5cb6fcc9a9c8",
}


def test_database_migrated_before_the_comment_edit_migrates_on(stack, fresh_db):
    db, url = fresh_db
    assert run_migrate(url, migrations_dir=REPO_MIGRATIONS).returncode == 0
    for version, checksum in EARLIER_CHECKSUMS.items():
        support.psql(stack, f"UPDATE schema_migrations SET checksum = '{checksum}' "
                            f"WHERE version = {version}", db=db)
    r = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0, r.stderr
    s = run_migrate(url, "status", migrations_dir=REPO_MIGRATIONS)
    assert s.returncode == 0, s.stdout
    assert re.search(r"^1\s+applied\s", s.stdout, re.M), s.stdout
    assert re.search(r"^2\s+applied\s", s.stdout, re.M), s.stdout
    # the old checksum of V001 recorded for V002 is not accepted: only the exact pair is
    support.psql(stack, f"UPDATE schema_migrations SET checksum = '{EARLIER_CHECKSUMS[1]}' "
                        "WHERE version = 2", db=db)
    r = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 1
    assert "changed after it was applied" in " ".join(errors(r))


def test_missing_applied_file_is_refused(stack, fresh_db, mig_copy):
    db, url = fresh_db
    assert run_migrate(url, migrations_dir=mig_copy).returncode == 0
    last_version, last_name = repo_versions()[-1]
    (mig_copy / f"V{last_version:03d}__{last_name}.sql").unlink()
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 1
    errs = errors(r)
    assert len(errs) == 1, r.stderr
    assert "missing" in errs[0] and f"V{last_version:03d}__{last_name}.sql" in errs[0]
    s = run_migrate(url, "status", migrations_dir=mig_copy)
    assert s.returncode == 1
    assert re.search(rf"^{last_version}\s+missing\s", s.stdout, re.M), s.stdout


def test_status_lists_applied_and_pending(stack, fresh_db, tmp_path):
    db, url = fresh_db
    versions = repo_versions()
    r = run_migrate(url, "status", migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0, r.stderr
    for v, name in versions:
        assert re.search(rf"^{v}\s+pending\s+-\s+{re.escape(name)}$", r.stdout, re.M), r.stdout
    assert f"0 applied, {len(versions)} pending" in r.stdout
    assert support.psql(stack, "SELECT to_regclass('schema_migrations')", db=db) == [(None,)], \
        "status must not create the history table"

    # apply only the first version, then look again with every file
    only_first = tmp_path / "first"
    only_first.mkdir()
    first = next(REPO_MIGRATIONS.glob(f"V{versions[0][0]:03d}__*.sql"))
    shutil.copy(first, only_first / first.name)
    assert run_migrate(url, migrations_dir=only_first).returncode == 0
    r = run_migrate(url, "status", migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^{versions[0][0]}\s+applied\s+\d{{4}}-\d\d-\d\dT", r.stdout, re.M), r.stdout
    for v, name in versions[1:]:
        assert re.search(rf"^{v}\s+pending\s", r.stdout, re.M), r.stdout
    assert f"1 applied, {len(versions) - 1} pending" in r.stdout

    # the rest is applied later, leaving the first untouched
    before = history(stack, db)
    assert run_migrate(url, migrations_dir=REPO_MIGRATIONS).returncode == 0
    after = history(stack, db)
    assert after[0] == before[0]
    assert [(v, n) for v, n, _, _ in after] == versions


def test_failed_migration_rolls_back_and_is_not_recorded(stack, fresh_db, mig_copy):
    db, url = fresh_db
    (mig_copy / "V900__broken.sql").write_text(
        "CREATE TABLE t_should_vanish (x int);\nSELECT 1 / 0 AS secret_sql_text;\n")
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 1
    errs = errors(r)
    assert any("V900__broken" in e and "22012" in e for e in errs), r.stderr
    assert "secret_sql_text" not in r.stderr, "SQL text must not be logged above debug"
    assert support.psql(stack, "SELECT to_regclass('t_should_vanish')", db=db) == [(None,)]
    assert [v for v, _, _, _ in history(stack, db)] == [v for v, _ in repo_versions()]
    # fixing the file lets the next run apply it
    (mig_copy / "V900__broken.sql").write_text("CREATE TABLE t_fixed (x int);\n")
    assert run_migrate(url, migrations_dir=mig_copy).returncode == 0
    assert history(stack, db)[-1][:2] == (900, "broken")


def test_out_of_order_version_is_refused(stack, fresh_db, mig_copy):
    db, url = fresh_db
    (mig_copy / "V900__late.sql").write_text("SELECT 1;\n")
    assert run_migrate(url, migrations_dir=mig_copy).returncode == 0
    (mig_copy / "V899__older.sql").write_text("SELECT 1;\n")
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 1
    assert any("V899__older.sql" in e and "older" in e for e in errors(r)), r.stderr


def test_database_url_unset_is_a_config_error():
    r = run_migrate(None, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 2
    errs = errors(r)
    assert len(errs) == 1 and "DATABASE_URL" in errs[0], r.stderr


@pytest.mark.parametrize("bad", ["not a connection string", "postgresql://[::1"])
def test_bad_database_url_is_a_config_error(bad):
    r = run_migrate(bad, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 2, r.stderr
    errs = errors(r)
    assert len(errs) == 1 and "DATABASE_URL" in errs[0], r.stderr
    assert bad not in r.stderr


def test_bad_migrations_dir_is_a_config_error(stack, tmp_path):
    r = run_migrate(stack["DATABASE_URL"], migrations_dir=tmp_path / "nope")
    assert r.returncode == 2
    errs = errors(r)
    assert len(errs) == 1 and "MIGRATIONS_DIR" in errs[0], r.stderr


def test_unreachable_database_fails_without_leaking_the_password(tmp_path):
    port = support.free_port()
    url = f"postgresql://someone:hunter2secret@127.0.0.1:{port}/x?connect_timeout=2"
    r = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 1
    assert "hunter2secret" not in r.stderr + r.stdout
    assert any("cannot connect" in e for e in errors(r)), r.stderr


def test_logs_are_json_lines(stack, fresh_db):
    _, url = fresh_db
    r = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines and all(json.loads(l)["service"] == "profile-migrate" for l in lines)


def test_unknown_command_is_a_usage_error(stack):
    r = run_migrate(stack["DATABASE_URL"], "drop-everything", migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 2
    assert any("unknown command" in e for e in errors(r)), r.stderr
    h = run_migrate(stack["DATABASE_URL"], "--help")
    assert h.returncode == 0 and "status" in h.stdout


def test_v003_backfills_resume_points_from_history(stack, fresh_db, tmp_path):
    """V003 fills resume_points with each video's latest history entry (by watched_at, ties by
    entry_id), finished ones included: the table holds the latest point, the page filters."""
    db, url = fresh_db
    before = tmp_path / "v002"
    before.mkdir()
    for p in REPO_MIGRATIONS.glob("V00[12]__*.sql"):
        shutil.copy(p, before / p.name)
    r = run_migrate(url, migrations_dir=before)
    assert r.returncode == 0, r.stderr
    support.psql(stack, """
        INSERT INTO history_entries (user_id, entry_id, video_id, position_seconds,
                                     duration_seconds, watched_at) VALUES
            ('b1', '00000000-0000-0000-0000-000000000001', 'v1', 1, 100, '2026-01-01 00:00:00+00'),
            ('b1', '00000000-0000-0000-0000-000000000002', 'v1', 2, 100, '2026-01-02 00:00:00+00'),
            ('b1', '00000000-0000-0000-0000-000000000003', 'v1', 3, 100, '2025-12-31 00:00:00+00'),
            ('b1', '00000000-0000-0000-0000-000000000004', 'v2', 4, 4, '2026-01-01 00:00:00+00'),
            ('b1', '00000000-0000-0000-0000-000000000006', 'v3', 6, NULL, '2026-01-01 00:00:00+00'),
            ('b1', '00000000-0000-0000-0000-000000000005', 'v3', 5, NULL, '2026-01-01 00:00:00+00'),
            ('b2', '00000000-0000-0000-0000-000000000007', 'v1', 7, 100, '2026-01-01 00:00:00+00');
    """, db=db)
    r = run_migrate(url, migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0, r.stderr
    rows = support.psql(stack, "SELECT user_id, video_id, position_seconds FROM resume_points "
                               "ORDER BY user_id, video_id", db=db)
    assert rows == [("b1", "v1", 2), ("b1", "v2", 4), ("b1", "v3", 6), ("b2", "v1", 7)]
    # the continue page of b1: v2 is finished; v1 (2 January) before v3 (null duration)
    page = support.psql(stack, "SELECT video_id FROM api_page_continue('b1', 10, NULL, NULL)",
                        db=db)
    assert page == [("v1",), ("v3",)]


def test_v004_refuses_a_role_other_than_the_owner(stack, fresh_db):
    """Migrations from V004 on run as profile_owner (docs/operations.md, "Database roles"): as
    anyone else, even a superuser, V004 stops with a message naming the owner, and rolls back."""
    db, _ = fresh_db
    r = run_migrate(support.database_url(stack, db, role="admin"), migrations_dir=REPO_MIGRATIONS)
    assert r.returncode != 0
    errs = errors(r)
    assert any("profile_owner" in m for m in errs), r.stderr
    assert [v for v, _, _, _ in history(stack, db)] == [1, 2, 3]
    # The documented hand-over of a database migrated by another role, then the owner finishes.
    support.psql(stack, "REASSIGN OWNED BY profile TO profile_owner", db=db)
    r = run_migrate(support.database_url(stack, db, role="owner"), migrations_dir=REPO_MIGRATIONS)
    assert r.returncode == 0, r.stderr
    assert [v for v, _, _, _ in history(stack, db)] == [v for v, _ in repo_versions()]


NO_TX = "-- profile-migrate: no-transaction\n"


def test_no_transaction_migration_runs_concurrently_and_is_recorded(stack, fresh_db, mig_copy):
    """CREATE INDEX CONCURRENTLY cannot run in a transaction block: the marker's first line makes
    profile-migrate run the file statement by statement (';' at the end of a line)."""
    db, url = fresh_db
    (mig_copy / "V900__cic.sql").write_text(
        NO_TX + "-- comments and blank lines are skipped; statements may span lines\n\n"
        "CREATE TABLE t_cic (x int, y text);\n"
        "CREATE INDEX CONCURRENTLY t_cic_x_idx\n    ON t_cic (x) INCLUDE (y);\n"
        "INSERT INTO t_cic VALUES (1, 'a;b');\n")
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 0, r.stderr
    assert history(stack, db)[-1][:2] == (900, "cic")
    assert support.psql(stack, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                               "'t_cic_x_idx'::regclass", db=db) == [(True,)]
    assert support.psql(stack, "SELECT y FROM t_cic", db=db) == [("a;b",)]
    # without the marker the same statement fails inside the migration's transaction
    (mig_copy / "V901__cic_in_tx.sql").write_text(
        "CREATE INDEX CONCURRENTLY t_cic_y_idx ON t_cic (y);\n")
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 1
    assert any("V901__cic_in_tx" in e and "25001" in e for e in errors(r)), r.stderr


def test_failed_no_transaction_migration_keeps_earlier_statements_and_reruns(stack, fresh_db,
                                                                              mig_copy):
    db, url = fresh_db
    path = mig_copy / "V900__half.sql"
    path.write_text(NO_TX + "CREATE TABLE IF NOT EXISTS t_half (x int);\nSELECT 1 / 0;\n")
    r = run_migrate(url, migrations_dir=mig_copy)
    assert r.returncode == 1
    assert any("outside a transaction" in e for e in errors(r)), r.stderr
    # the statement before the failure stays; the version is not recorded
    assert support.psql(stack, "SELECT to_regclass('t_half')::text", db=db) == [("t_half",)]
    assert 900 not in [v for v, _, _, _ in history(stack, db)]
    # a fixed file runs again from the top (it is written to be re-runnable)
    path.write_text(NO_TX + "CREATE TABLE IF NOT EXISTS t_half (x int);\nSELECT 1;\n")
    assert run_migrate(url, migrations_dir=mig_copy).returncode == 0
    assert history(stack, db)[-1][:2] == (900, "half")


def test_v008_history_pages_use_the_covering_index(stack, fresh_db):
    db, url = fresh_db
    assert run_migrate(url, migrations_dir=REPO_MIGRATIONS).returncode == 0
    idx = support.psql(stack, "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                              "WHERE indrelid = 'history_entries'::regclass "
                              "AND indexrelid::regclass::text LIKE '%watched%' ORDER BY 1", db=db)
    assert idx == [("history_entries_user_video_watched_idx", True),
                   ("history_entries_user_watched_cover_idx", True),
                   ("history_entries_watched_idx", True)]
    support.psql(stack, "INSERT INTO history_entries (user_id, video_id, position_seconds, "
                        "watched_at) SELECT 'u' || (g % 50), 'v' || g, g % 100, "
                        "now() - g * interval '1 minute' FROM generate_series(1, 5000) g",
                db=db)
    import psycopg2
    conn = psycopg2.connect(url)
    conn.autocommit = True  # VACUUM (the visibility map an index-only scan needs) needs it
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE history_entries")
    finally:
        conn.close()
    plan = "\n".join(r[0] for r in support.psql(
        stack, "EXPLAIN SELECT * FROM api_page_history('u7', 50, NULL, NULL)", db=db))
    assert "Index Only Scan using history_entries_user_watched_cover_idx" in plan, plan
