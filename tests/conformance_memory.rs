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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flows_round_trip() {
    conformance::flows_round_trip(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_writes_are_conditional() {
    conformance::flow_writes_are_conditional(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flows_in_batches_are_all_or_nothing() {
    conformance::flows_in_batches_are_all_or_nothing(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flows_awaiting_approval_are_listed_oldest_first() {
    conformance::flows_awaiting_approval_are_listed_oldest_first(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_removes_expired_flows() {
    conformance::purge_removes_expired_flows(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_flow_updates_have_one_winner() {
    conformance::racing_flow_updates_have_one_winner(fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_flow_inserts_have_one_winner() {
    conformance::racing_flow_inserts_have_one_winner(fresh()).await;
}

/// The suite is not vacuous: run against a store that drops every write, it
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_catches_a_broken_store() {
    use forgetful::Forgetful;
    let outcome = tokio::spawn(async {
        conformance::records_round_trip(Arc::new(Forgetful)).await;
    })
    .await;
    assert!(
        outcome.is_err(),
        "a store that forgets writes must fail the suite"
    );
    let outcome = tokio::spawn(async {
        conformance::flows_round_trip(Arc::new(Forgetful)).await;
    })
    .await;
    assert!(outcome.is_err(), "a store that forgets flows must fail the suite");
}

/// A store that accepts every commit and remembers nothing.
mod forgetful {
    use guestpass::directory::{
        AddressThrottle, DirectoryStore, FlowRecord, InvitationRecord, UserRecord, Versioned, WriteBatch,
    };
    use guestpass::error::StoreError;
    use guestpass::id::Id;
    use guestpass::secret::Digest;

    /// Forgets everything.
    #[derive(Debug, Default)]
    pub struct Forgetful;

    #[async_trait::async_trait]
    impl DirectoryStore for Forgetful {
        async fn user(&self, _t: &str, _id: Id) -> Result<Option<Versioned<UserRecord>>, StoreError> {
            Ok(None)
        }

        async fn user_by_mail(
            &self,
            _t: &str,
            _k: &str,
        ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
            Ok(None)
        }

        async fn user_by_identity(
            &self,
            _t: &str,
            _i: &str,
            _s: &str,
        ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
            Ok(None)
        }

        async fn users(&self, _t: &str) -> Result<Vec<UserRecord>, StoreError> {
            Ok(Vec::new())
        }

        async fn invitation(&self, _id: Id) -> Result<Option<Versioned<InvitationRecord>>, StoreError> {
            Ok(None)
        }

        async fn throttle(
            &self,
            _t: &str,
            _k: &str,
        ) -> Result<Option<Versioned<AddressThrottle>>, StoreError> {
            Ok(None)
        }

        async fn flow(&self, _t: &str, _h: &Digest) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
            Ok(None)
        }

        async fn flow_by_id(&self, _t: &str, _id: Id) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
            Ok(None)
        }

        async fn flows_awaiting_approval(
            &self,
            _t: &str,
            _now: time::OffsetDateTime,
            _limit: u32,
        ) -> Result<Vec<Versioned<FlowRecord>>, StoreError> {
            Ok(Vec::new())
        }

        async fn commit(&self, _batch: WriteBatch) -> Result<(), StoreError> {
            Ok(())
        }

        async fn purge_expired(
            &self,
            _now: time::OffsetDateTime,
            _limit: u32,
        ) -> Result<guestpass::directory::PurgeReport, StoreError> {
            Ok(guestpass::directory::PurgeReport::default())
        }
    }
}
