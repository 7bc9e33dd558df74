//! The SQLite store: the conformance suite against fresh files, migrations
//! (idempotent, concurrent, newer schema refused), persistence across
//! reopen, injected commit failures, and error hygiene.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sqlsupport;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use guestpass::directory::{CommitHook, DirectoryStore, SqliteStore, conformance};
use guestpass::error::StoreError;
use sqlsupport::TempDir;
use sqlx::{Connection, Executor, Row};

/// The migrations this build ships (SQLite has no version 2).
const MIGRATIONS: [i64; 3] = [1, 3, 4];

async fn raw(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn applied(path: &std::path::Path) -> Vec<i64> {
    let mut conn = raw(path).await;
    sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_files() {
    let dir = TempDir::new("conformance");
    let counter = AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.file(&format!("store{n}.db"));
        async move { Arc::new(SqliteStore::open(&path).await.unwrap()) as Arc<dyn DirectoryStore> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory() {
    conformance::run_all(|| async {
        Arc::new(SqliteStore::in_memory().await.unwrap()) as Arc<dyn DirectoryStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_by_url_and_by_path() {
    let dir = TempDir::new("url");
    let path = dir.file("by url.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    drop(store);
    assert!(path.exists());
    SqliteStore::open(&path).await.unwrap();
    assert_eq!(applied(&path).await, MIGRATIONS);
    // The file is in WAL mode (which persists in the file).
    let mut conn = raw(&path).await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    let dir = TempDir::new("idempotent");
    let path = dir.file("d.db");
    for _ in 0..3 {
        let store = SqliteStore::open(&path).await.unwrap();
        store.close().await;
    }
    assert_eq!(applied(&path).await, MIGRATIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_file_all_succeed() {
    for round in 0..5 {
        let dir = TempDir::new("concurrent");
        let path = dir.file("d.db");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(&path).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
        assert_eq!(applied(&path).await, MIGRATIONS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    let path = dir.file("d.db");
    SqliteStore::open(&path).await.unwrap().close().await;
    let mut conn = raw(&path).await;
    conn.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (20990101000000, 'from the future', TRUE, x'00', 0)",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Backend {
            message: "database schema version 20990101000000 is newer than this guestpass (max 4)".into()
        }
    );
}

/// A database an older guestpass created (schema version 1, with records)
/// is brought to version 4 on open: its records stay, the redemption
/// sessions and passcodes tables go, and flows work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded() {
    let dir = TempDir::new("upgrade");
    let path = dir.file("d.db");
    let old = sqlsupport::migrations_up_to("sqlite", 1);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let data = serde_json::to_string(&sqlsupport::old_throttle()).unwrap();
    sqlx::query("INSERT INTO throttles (tenant_id, address_key, data, version) VALUES ($1, $2, $3, 1)")
        .bind(sqlsupport::TENANT)
        .bind("old@fabrikam.example")
        .bind(data)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(applied(&path).await, [1]);

    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    assert_eq!(applied(&path).await, MIGRATIONS);
    let mut conn = raw(&path).await;
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('sessions', 'passcodes', 'flows') ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, [("flows".to_owned(),)], "version 4 keeps flows only");
    conn.close().await.unwrap();
    sqlsupport::upgraded_store_works(store.clone()).await;
    store.close().await;
    // Reopening the upgraded file applies nothing more.
    SqliteStore::open(&path).await.unwrap().close().await;
    assert_eq!(applied(&path).await, MIGRATIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_do_not_leak() {
    let dir = TempDir::new("corrupt");
    let path = dir.file("d.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    sqlsupport::corrupt_records_do_not_leak(store, |id| async move {
        let mut conn = raw(&path).await;
        sqlx::query("UPDATE users SET data = '{\"secret\": \"hunter2\"}' WHERE id = $1")
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_names_the_file_and_errors_are_typed() {
    let dir = TempDir::new("debug");
    let path = dir.file("d.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains("SqliteStore") && shown.contains("d.db"), "{shown}");
    store.close().await;
    let err = store.users("t1").await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("closed"), "{err}");

    let missing = dir.file("no/such/dir/d.db");
    let err = SqliteStore::open(&missing).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend { message } if message.starts_with("cannot open sqlite database")),
        "{err:?}"
    );
}

async fn fresh(hook: Option<CommitHook>) -> (TempDir, Arc<dyn DirectoryStore>) {
    let dir = TempDir::new("fresh");
    let store = SqliteStore::open(dir.file("d.db")).await.unwrap();
    let store = match hook {
        Some(h) => store.with_commit_hook(h),
        None => store,
    };
    (dir, Arc::new(store))
}

async fn reopen(dir: &TempDir) -> Arc<dyn DirectoryStore> {
    Arc::new(SqliteStore::open(dir.file("d.db")).await.unwrap())
}

sqlsupport::shared_store_tests!(fresh, reopen);
