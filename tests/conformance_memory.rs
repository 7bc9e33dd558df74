//! The store conformance suite against [`MemoryStore`]: every guarantee the
//! core relies on (conditional all-or-nothing batches, unique mail and
//! identities, tenant isolation, one winner per race) holds for the default
//! store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use guestpass::directory::{DirectoryStore, MemoryStore, conformance};

fn fresh() -> Arc<dyn DirectoryStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_whole_suite() {
    conformance::run_all(|| async { fresh() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_round_trip() {
    conformance::records_round_trip(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_are_compare_and_set() {
    conformance::versions_are_compare_and_set(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_are_all_or_nothing() {
    conformance::batches_are_all_or_nothing(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mail_is_unique_per_tenant() {
    conformance::mail_is_unique_per_tenant(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identities_are_unique_and_indexed() {
    conformance::identities_are_unique_and_indexed(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_isolated() {
    conformance::tenants_are_isolated(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_user_batches_keep_indexes() {
    conformance::multi_user_batches_keep_indexes(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_have_one_winner() {
    conformance::racing_updates_have_one_winner(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_inserts_have_one_winner() {
    conformance::racing_inserts_have_one_winner(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_redemptions_have_one_winner() {
    conformance::racing_redemptions_have_one_winner(fresh()).await;
}

/// The suite is not vacuous: run against a store that drops every write, it
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_catches_a_broken_store() {
    use async_trait_free::Forgetful;
    let outcome = tokio::spawn(async {
        conformance::records_round_trip(Arc::new(Forgetful)).await;
    })
    .await;
    assert!(
        outcome.is_err(),
        "a store that forgets writes must fail the suite"
    );
}

/// A store that accepts every commit and remembers nothing, written without
/// the `async-trait` macro (not a dev-dependency) by boxing futures by hand.
mod async_trait_free {
    use std::future::Future;
    use std::pin::Pin;

    use guestpass::directory::{
        AddressThrottle, DirectoryStore, InvitationRecord, PasscodeRecord, RedemptionSession, UserRecord,
        Versioned, WriteBatch,
    };
    use guestpass::error::StoreError;
    use guestpass::id::Id;
    use guestpass::secret::Digest;

    type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

    /// Forgets everything.
    #[derive(Debug, Default)]
    pub struct Forgetful;

    impl DirectoryStore for Forgetful {
        fn user<'a, 'b, 'c>(&'a self, _t: &'b str, _id: Id) -> Fut<'c, Option<Versioned<UserRecord>>>
        where
            'a: 'c,
            'b: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn user_by_mail<'a, 'b, 'd, 'c>(
            &'a self,
            _t: &'b str,
            _k: &'d str,
        ) -> Fut<'c, Option<Versioned<UserRecord>>>
        where
            'a: 'c,
            'b: 'c,
            'd: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn user_by_identity<'a, 'b, 'd, 'e, 'c>(
            &'a self,
            _t: &'b str,
            _i: &'d str,
            _s: &'e str,
        ) -> Fut<'c, Option<Versioned<UserRecord>>>
        where
            'a: 'c,
            'b: 'c,
            'd: 'c,
            'e: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn users<'a, 'b, 'c>(&'a self, _t: &'b str) -> Fut<'c, Vec<UserRecord>>
        where
            'a: 'c,
            'b: 'c,
        {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn invitation<'a, 'c>(&'a self, _id: Id) -> Fut<'c, Option<Versioned<InvitationRecord>>>
        where
            'a: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn session<'a, 'b, 'c>(&'a self, _h: &'b Digest) -> Fut<'c, Option<Versioned<RedemptionSession>>>
        where
            'a: 'c,
            'b: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn passcode<'a, 'c>(&'a self, _id: Id) -> Fut<'c, Option<Versioned<PasscodeRecord>>>
        where
            'a: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn throttle<'a, 'b, 'd, 'c>(
            &'a self,
            _t: &'b str,
            _k: &'d str,
        ) -> Fut<'c, Option<Versioned<AddressThrottle>>>
        where
            'a: 'c,
            'b: 'c,
            'd: 'c,
        {
            Box::pin(async { Ok(None) })
        }

        fn commit<'a, 'c>(&'a self, _batch: WriteBatch) -> Fut<'c, ()>
        where
            'a: 'c,
        {
            Box::pin(async { Ok(()) })
        }
    }
}
