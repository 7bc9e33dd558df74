//! The PostgreSQL store: the conformance suite, migrations (idempotent,
//! concurrent, newer schema refused), persistence across reconnect,
//! injected and connection-killing commit failures, an unreachable server,
//! and error hygiene.
//!
//! Needs a server: `GUESTPASS_TEST_POSTGRES_URL` (such as
//! `postgres://postgres@127.0.0.1:5432/postgres`) names a role that may
//! create databases. Every test creates its own `guestpass_test_*`
//! database and drops it afterwards, also when it fails. Without the
//! variable the tests fail, naming it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sqlsupport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guestpass::directory::{CommitHook, DirectoryStore, PostgresStore, conformance};
use guestpass::error::StoreError;
use guestpass::{Error, RedemptionStep};
use sqlsupport::{TestDb, pg_exec, service};
use sqlx::{Connection, Row};

/// The migrations this build ships.
const MIGRATIONS: [i64; 4] = [1, 2, 3, 4];

async fn applied(url: &str) -> Vec<i64> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query("SELECT version FROM guestpass._sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_fresh_databases() {
    let dbs = Mutex::new(Vec::new());
    conformance::run_all(|| async {
        let db = TestDb::create().await;
        let store = PostgresStore::connect(&db.url).await.unwrap();
        dbs.lock().unwrap().push(db);
        Arc::new(store) as Arc<dyn DirectoryStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_concurrent() {
    let db = TestDb::create().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    for t in tasks {
        let store = t.await.unwrap().unwrap();
        store.close().await;
    }
    PostgresStore::connect(&db.url).await.unwrap().close().await;
    assert_eq!(applied(&db.url).await, MIGRATIONS);
}

/// The host application's own tables and sqlx migration history in the same
/// database are left alone: guestpass keeps to its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_a_database_with_the_host_application() {
    let db = TestDb::create().await;
    pg_exec(
        &db.url,
        "CREATE TABLE public._sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, \
         execution_time BIGINT NOT NULL); \
         INSERT INTO public._sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (20240101000000, 'host app', TRUE, '\\x00', 0); \
         CREATE TABLE public.users (id TEXT PRIMARY KEY, name TEXT); \
         INSERT INTO public.users VALUES ('host-1', 'kept');",
    )
    .await;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    conformance::records_round_trip(Arc::new(store)).await;
    assert_eq!(applied(&db.url).await, MIGRATIONS);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let host: Vec<(i64,)> = sqlx::query_as("SELECT version FROM public._sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        host,
        [(20240101000000,)],
        "the host's migration history is untouched"
    );
    let name: (String,) = sqlx::query_as("SELECT name FROM public.users WHERE id = 'host-1'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name.0, "kept");
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let db = TestDb::create().await;
    PostgresStore::connect(&db.url).await.unwrap().close().await;
    pg_exec(
        &db.url,
        "INSERT INTO guestpass._sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (20990101000000, 'from the future', TRUE, '\\x00', 0)",
    )
    .await;
    let err = PostgresStore::connect(&db.url).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Backend {
            message: "database schema version 20990101000000 is newer than this guestpass (max 4)".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_between_calls() {
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let w = service(store.clone(), 33);
    let guest = w.invite("frank@fabrikam.example").await;
    for round in 0..3 {
        let killed = db.terminate_connections().await;
        assert!(killed >= 1, "round {round}: the store had a connection");
        let started = match w.gp.start_redemption(&guest.ticket).await {
            Ok(s) => s,
            Err(Error::Store(StoreError::Backend { message })) => {
                eprintln!("round {round}: typed failure, then a repeat: {message}");
                w.gp.start_redemption(&guest.ticket).await.unwrap()
            }
            Err(e) => panic!("round {round}: untyped failure {e:?}"),
        };
        assert!(matches!(started.step, RedemptionStep::EnterPasscode { .. }));
    }
    let handle = w.to_consent(&guest).await;
    db.terminate_connections().await;
    let r = w.accept(&handle).await;
    if let Err(e) = r {
        assert!(matches!(e, Error::Store(StoreError::Backend { .. })), "{e:?}");
        eprintln!("finish: typed failure, then a repeat: {e}");
        w.accept(&handle).await.unwrap();
    }
    sqlsupport::assert_redeemed(&sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await);
}

/// The server kills the connection in the middle of a commit (after its
/// second statement): the commit fails typed, nothing of it is visible, and
/// a repeat commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_midway_is_all_or_nothing() {
    let db = Arc::new(TestDb::create().await);
    let armed = Arc::new(AtomicBool::new(false));
    let hook = {
        let (db, armed) = (db.clone(), armed.clone());
        Arc::new(move |n: usize| {
            if n == 2 && armed.swap(false, Ordering::SeqCst) {
                db.terminate_connections_blocking();
            }
            Ok(())
        })
    };
    let store = Arc::new(
        PostgresStore::connect(&db.url)
            .await
            .unwrap()
            .with_commit_hook(hook),
    );
    let w = service(store.clone(), 34);
    let guest = w.invite("grace@fabrikam.example").await;
    let handle = w.to_consent(&guest).await;
    let before = sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await;
    armed.store(true, Ordering::SeqCst);
    let err = w.accept(&handle).await.unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
    assert!(matches!(err, Error::Store(StoreError::Backend { .. })), "{err:?}");
    assert!(!armed.load(Ordering::SeqCst), "the hook fired");
    let after = sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await;
    assert_eq!(after, before, "a cut-off commit left a trace");
    w.accept(&handle).await.unwrap();
    sqlsupport::assert_redeemed(&sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await);
}

/// Without a hook a commit is one call of `guestpass.commit_batch`. A
/// failure in its last statement (a trigger raises on the identity insert)
/// and a connection killed while the call runs (the trigger sleeps) both
/// leave nothing of the batch, and once the trigger is gone a repeat
/// commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_call_cut_off_midway_is_all_or_nothing() {
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let w = service(store.clone(), 35);
    let guest = w.invite("ivan@fabrikam.example").await;
    let handle = w.to_consent(&guest).await;
    let before = sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await;

    pg_exec(
        &db.url,
        "CREATE FUNCTION guestpass.test_fail() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected at the identity insert'; END $$; \
         CREATE TRIGGER test_fail BEFORE INSERT ON guestpass.user_identities \
         FOR EACH ROW EXECUTE FUNCTION guestpass.test_fail();",
    )
    .await;
    let err = w.accept(&handle).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("injected at the identity insert"), "{shown}");
    assert!(shown.contains("cannot write user"), "named by its write: {shown}");
    assert_eq!(
        sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await,
        before,
        "a failed last statement left a trace"
    );

    pg_exec(
        &db.url,
        "CREATE OR REPLACE FUNCTION guestpass.test_fail() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;",
    )
    .await;
    let finish = {
        let w = w.clone();
        let handle = handle.clone();
        tokio::spawn(async move { w.accept(&handle).await })
    };
    // Wait until the call sleeps in the trigger, then kill its connection.
    let mut killed = 0;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        if db.sleeping_backends().await > 0 {
            killed = db.terminate_connections().await;
            break;
        }
    }
    assert!(killed >= 1, "the batch call never reached the trigger");
    let err = finish.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Store(StoreError::Backend { .. })), "{err:?}");
    assert_eq!(
        sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await,
        before,
        "a killed batch call left a trace"
    );

    pg_exec(&db.url, "DROP TRIGGER test_fail ON guestpass.user_identities").await;
    w.accept(&handle).await.unwrap();
    sqlsupport::assert_redeemed(&sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await);
}

/// A database an older guestpass brought to schema version 2 (with
/// records, and the commit function that knows no flows) is brought to
/// version 4 on connect: its records stay, the redemption sessions and
/// passcodes tables go, `commit_batch` is replaced and
/// flows commit through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_database_is_upgraded() {
    let db = TestDb::create().await;
    let old = sqlsupport::migrations_up_to("postgres", 2);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::Executor::execute(&mut conn, "CREATE SCHEMA guestpass; SET search_path TO guestpass")
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let throttle = serde_json::to_value(sqlsupport::old_throttle()).unwrap();
    let batch = |op: &str| serde_json::json!([{"op": op, "m": true, "a": [sqlsupport::TENANT, "old@fabrikam.example", throttle]}]);
    sqlx::query("SELECT guestpass.commit_batch($1)")
        .bind(sqlx::types::Json(batch("throttle_insert")))
        .execute(&mut conn)
        .await
        .unwrap();
    let err = sqlx::query("SELECT guestpass.commit_batch($1)")
        .bind(sqlx::types::Json(batch("flow_insert")))
        .execute(&mut conn)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("GP002"), "version 2 knows no flows: {err}");
    conn.close().await.unwrap();
    assert_eq!(applied(&db.url).await, [1, 2]);

    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    assert_eq!(applied(&db.url).await, MIGRATIONS);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'guestpass' \
         AND table_name IN ('sessions', 'passcodes', 'flows') ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, [("flows".to_owned(),)], "version 4 keeps flows only");
    conn.close().await.unwrap();
    sqlsupport::upgraded_store_works(store.clone()).await;
    store.close().await;
    PostgresStore::connect(&db.url).await.unwrap().close().await;
    assert_eq!(applied(&db.url).await, MIGRATIONS);
}

/// A flow write that fails inside the `commit_batch` call (a trigger
/// raises on the flow insert) is named by its write, and nothing of its
/// batch is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flow_statement_in_the_batch_call_is_named() {
    use guestpass::directory::{Expect, Write, WriteBatch};
    use guestpass::flow::machine::FlowState;
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    pg_exec(
        &db.url,
        "CREATE FUNCTION guestpass.test_fail() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected at the flow insert'; END $$; \
         CREATE TRIGGER test_fail BEFORE INSERT ON guestpass.flows \
         FOR EACH ROW EXECUTE FUNCTION guestpass.test_fail();",
    )
    .await;
    let user = conformance::user(sqlsupport::TENANT, 1, "lena");
    let flow = conformance::flow(sqlsupport::TENANT, 1, FlowState::ChooseProvider);
    let batch = || {
        WriteBatch::new()
            .with(Write::User {
                record: user.clone(),
                expect: Expect::Absent,
            })
            .with(Write::Flow {
                record: flow.clone(),
                expect: Expect::Absent,
            })
    };
    let err = store.commit(batch()).await.unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(shown.contains("injected at the flow insert"), "{shown}");
    assert!(
        shown.contains(&format!("cannot write flow `{}`", flow.id)),
        "named by its write: {shown}"
    );
    assert!(
        store
            .user(sqlsupport::TENANT, user.user.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .flow_by_id(sqlsupport::TENANT, flow.id)
            .await
            .unwrap()
            .is_none()
    );

    pg_exec(&db.url, "DROP TRIGGER test_fail ON guestpass.flows").await;
    store.commit(batch()).await.unwrap();
    assert_eq!(
        store
            .flow(sqlsupport::TENANT, &flow.handle_hash)
            .await
            .unwrap()
            .unwrap()
            .value,
        flow
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_do_not_leak() {
    let db = TestDb::create().await;
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let url = db.url.clone();
    sqlsupport::corrupt_records_do_not_leak(store, |id| async move {
        pg_exec(
            &url,
            &format!("UPDATE guestpass.users SET data = '{{\"secret\": \"hunter2\"}}' WHERE id = '{id}'"),
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_errors_never_show_the_password() {
    let db = TestDb::create().await;
    // The test server trusts local connections, so the password is unused.
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some("s3cret-pw")).unwrap();
    let store = PostgresStore::connect(url.as_str()).await.unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains(&db.name), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    store.close().await;
    let err = store.users("t1").await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");

    // A database that does not exist.
    let mut missing = url.clone();
    missing.set_path("/guestpass_no_such_database");
    let err = PostgresStore::connect(missing.as_str()).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("cannot connect to postgres://"), "{message}");
    assert!(message.contains("guestpass_no_such_database"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_fast_and_typed() {
    // Needs no server, but a run without one configured must not look green.
    sqlsupport::admin_url();
    // Nothing listens on port 1.
    let started = Instant::now();
    let err = PostgresStore::connect("postgres://postgres:s3cret-pw@127.0.0.1:1/guestpass")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let StoreError::Backend { message } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("cannot connect to postgres://postgres@127.0.0.1:1/guestpass: "),
        "{message}"
    );
    assert!(!message.contains("s3cret-pw"), "{message}");
    let err = PostgresStore::connect("postgres://u:s3cret-pw@127.0.0.1:5432/x?sslmode=bogus")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
}

async fn fresh(hook: Option<CommitHook>) -> (TestDb, Arc<dyn DirectoryStore>) {
    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let store = match hook {
        Some(h) => store.with_commit_hook(h),
        None => store,
    };
    (db, Arc::new(store))
}

async fn reopen(db: &TestDb) -> Arc<dyn DirectoryStore> {
    Arc::new(PostgresStore::connect(&db.url).await.unwrap())
}

sqlsupport::shared_store_tests!(fresh, reopen);
