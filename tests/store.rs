//! The store layer on its own, on SQLite and on PostgreSQL, through its public API: what a
//! batch's working set answers after writes of the same batch, and what commit and rollback
//! (dropping the working set) leave behind. The pipeline's tests cover the same code end to
//! end; these pin down the contract the stages rely on.

mod common;

use appealflow::errors::ErrorClass;
use appealflow::model::{
    Appeal, AppealDoc, AppealStatus, CardValue, Client, ClientType, MatchedValue, MergeEntry, Source, Visitor,
};
use appealflow::store::{visitor_handle, Holders, Store, WorkingSet};
use common::{kinds, TestDb};

const PROJECT: &str = "acme";
const PHONE: &str = "+79991234567";

fn card(id: &str, created_at: i64, visitor: &str) -> Client {
    let mut c = Client::new(id.into(), PROJECT.into(), ClientType::Channel, created_at);
    c.doc.name = Some(format!("Card {id}"));
    c.doc.visitors.insert(Visitor { channel_id: "tg".into(), visitor_id: visitor.into() });
    c.add_contact("phone", CardValue::new(PHONE.into(), "8 999 123-45-67", Source::Gateway, created_at));
    c
}

fn appeal(id: &str, number: i64, client: &str, key: &str) -> Appeal {
    Appeal {
        id: id.into(),
        project_id: PROJECT.into(),
        number,
        client_id: client.into(),
        channel_id: "tg".into(),
        visitor_id: "v-1".into(),
        key: key.into(),
        status: AppealStatus::Open,
        opened_at: 1_000,
        last_message_at: 1_000,
        partition: "in:0".into(),
        close_deadline: Some(1_000 + 86_400_000),
        doc: AppealDoc::default(),
    }
}

async fn holders(ws: &mut WorkingSet) -> Vec<String> {
    match ws.value_holders(PROJECT, "phone", PHONE, 20).await.unwrap() {
        Holders::Cards(cards) => cards.into_iter().map(|c| c.id).collect(),
        Holders::Generic { .. } => panic!("two cards are not a generic value"),
    }
}

/// `survivor` absorbs `absorbed` the way the matching stage writes a merge.
async fn merge(ws: &mut WorkingSet, survivor: &str, absorbed: &str, at: i64) {
    let mut gone = ws.live_client(absorbed).await.unwrap().expect("absorbed card exists");
    let mut kept = ws.live_client(survivor).await.unwrap().expect("survivor exists");
    kept.doc.visitors.extend(gone.doc.visitors.clone());
    kept.doc.group_size += gone.doc.group_size;
    gone.merged_into = Some(survivor.into());
    ws.put_client(gone);
    ws.put_client(kept);
    ws.record_merge(MergeEntry {
        project_id: PROJECT.into(),
        at,
        survivor_id: survivor.into(),
        absorbed_ids: vec![absorbed.into()],
        by: "rule".into(),
        rule_id: Some("by-phone".into()),
        operator: None,
        matched: vec![MatchedValue { field: "phone".into(), value: PHONE.into() }],
        merge_id: format!("merge-{absorbed}-{at}"),
        survivor_before: None,
        brought: Vec::new(),
        split: None,
    });
}

async fn commit(ws: WorkingSet) {
    ws.commit("batch", &[]).await.expect("batch commits");
}

async fn stores() -> Vec<(TestDb, Store)> {
    let mut out = Vec::new();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let store = db.store().await;
        out.push((db, store));
    }
    out
}

#[tokio::test]
async fn after_a_merge_within_a_batch_a_value_lookup_returns_only_the_survivor() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        ws.put_client(card("b", 2, "v-b"));
        ws.put_appeal(appeal("ap-b", 1, "b", "v:tg:v-b"));
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        assert_eq!(holders(&mut ws).await, ["a", "b"], "both cards hold the phone, oldest first");
        merge(&mut ws, "a", "b", 7_000).await;
        assert_eq!(holders(&mut ws).await, ["a"]);
        let by_handle = ws.client_by_handle(PROJECT, &visitor_handle("tg", "v-b")).await.unwrap();
        assert_eq!(
            by_handle.map(|c| c.id).as_deref(),
            Some("a"),
            "the absorbed card's visitor leads to the survivor"
        );
        // An appeal the batch did not load is repointed at commit; until then its card
        // resolves to the survivor.
        let owner = ws.appeal_by_id("ap-b").await.unwrap().unwrap().client_id;
        assert_eq!(ws.live_client(&owner).await.unwrap().unwrap().id, "a");
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        assert_eq!(holders(&mut ws).await, ["a"], "and so it does in the next batch");
        assert_eq!(ws.live_client("b").await.unwrap().unwrap().id, "a");
        assert_eq!(ws.appeal_by_id("ap-b").await.unwrap().unwrap().client_id, "a");
        drop(ws); // a SQLite store has one connection
        assert_eq!(store.client("b").await.unwrap().unwrap().id, "a");
        assert_eq!(store.absorbed_ids("a").await.unwrap(), ["b"]);
        let ledger = store.merge_ledger(PROJECT, "a").await.unwrap();
        assert_eq!(ledger.len(), 1, "{ledger:?}");
        assert_eq!(
            (ledger[0].survivor_id.as_str(), ledger[0].absorbed_ids.as_slice()),
            ("a", &["b".to_string()][..])
        );
        assert_eq!((ledger[0].at, ledger[0].rule_id.as_deref()), (7_000, Some("by-phone")));
        assert_eq!(ledger[0].matched[0].value, PHONE);
        assert!(store.merge_ledger("other", "a").await.unwrap().is_empty(), "ledgers are per project");
    }
}

#[tokio::test]
async fn cards_created_and_merged_in_one_batch_leave_one_holder_of_their_value() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        ws.put_client(card("b", 2, "v-b"));
        assert_eq!(holders(&mut ws).await, ["a", "b"]);
        merge(&mut ws, "a", "b", 7_000).await;
        assert_eq!(holders(&mut ws).await, ["a"]);
        commit(ws).await;
        let mut ws = store.begin().await.unwrap();
        assert_eq!(holders(&mut ws).await, ["a"]);
    }
}

#[tokio::test]
async fn an_open_appeal_lookup_never_returns_a_closed_appeal() {
    for (_db, store) in stores().await {
        let key = "v:tg:v-a";
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        ws.put_appeal(appeal("ap-1", 1, "a", key));
        assert_eq!(ws.open_appeal(PROJECT, key).await.unwrap().map(|a| a.id).as_deref(), Some("ap-1"));
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        ws.prefetch_open_appeals(PROJECT, &[key.to_string()]).await.unwrap();
        let mut open = ws.open_appeal(PROJECT, key).await.unwrap().expect("the stored appeal is open");
        open.status = AppealStatus::Closed;
        ws.put_appeal(open);
        assert!(ws.open_appeal(PROJECT, key).await.unwrap().is_none(), "closed earlier in the batch");
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        ws.appeal_by_id("ap-1").await.unwrap();
        assert!(ws.open_appeal(PROJECT, key).await.unwrap().is_none(), "closed by an earlier batch");
        ws.put_appeal(appeal("ap-2", 2, "a", key));
        assert_eq!(ws.open_appeal(PROJECT, key).await.unwrap().map(|a| a.id).as_deref(), Some("ap-2"));
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        assert_eq!(ws.open_appeal(PROJECT, key).await.unwrap().map(|a| a.id).as_deref(), Some("ap-2"));
    }
}

#[tokio::test]
async fn a_claimed_input_id_is_free_again_after_a_rollback_and_applied_after_a_commit() {
    for (_db, store) in stores().await {
        let id = [(PROJECT.to_string(), "in-1".to_string())];
        let mut ws = store.begin().await.unwrap();
        ws.prefetch_applied(&id).await.unwrap();
        assert!(!ws.is_applied(PROJECT, "in-1").await.unwrap());
        ws.mark_applied(PROJECT, "in-1");
        assert!(ws.is_applied(PROJECT, "in-1").await.unwrap(), "a repeat later in the batch is skipped");
        drop(ws);

        let mut ws = store.begin().await.unwrap();
        assert!(!ws.is_applied(PROJECT, "in-1").await.unwrap(), "the rolled-back claim left nothing");
        ws.mark_applied(PROJECT, "in-1");
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        assert!(ws.is_applied(PROJECT, "in-1").await.unwrap());
        assert!(!ws.is_applied("other", "in-1").await.unwrap(), "input ids are per project");
    }
}

#[tokio::test]
async fn a_new_card_whose_id_another_card_holds_is_refused_and_never_overwrites_it() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        let mut intruder = card("a", 5, "v-x");
        intruder.doc.name = Some("Intruder".into());
        ws.put_client(intruder);
        let err = ws.commit("batch", &[]).await.expect_err("the id is taken");
        assert_eq!(err.class(), ErrorClass::Poison, "{err}");

        let kept = store.client("a").await.unwrap().unwrap();
        assert_eq!(kept.doc.name.as_deref(), Some("Card a"));
        assert_eq!(kept.created_at, 1);
    }
}

#[tokio::test]
async fn a_partition_clock_only_moves_forward_and_its_offset_commits_with_the_batch() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        assert_eq!(ws.clock("in:0").await.unwrap(), None);
        assert_eq!(ws.advance_clock("in:0", 500).await.unwrap(), 500);
        assert_eq!(ws.advance_clock("in:0", 100).await.unwrap(), 500, "a late input does not move it back");
        ws.set_next_offset("in:0", 7).await.unwrap();
        drop(ws);
        assert_eq!(store.partition("in:0").await.unwrap(), None, "rolled back");

        let mut ws = store.begin().await.unwrap();
        ws.advance_clock("in:0", 500).await.unwrap();
        ws.set_next_offset("in:0", 7).await.unwrap();
        commit(ws).await;
        assert_eq!(store.partition("in:0").await.unwrap(), Some((500, Some(7))));
    }
}

#[tokio::test]
async fn idle_appeals_come_due_by_their_own_deadline_in_deadline_order() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        let mut late = appeal("ap-late", 1, "a", "v:tg:v-a");
        late.close_deadline = Some(9_000);
        let mut early = appeal("ap-early", 2, "a", "v:tg:v-b");
        early.close_deadline = Some(3_000);
        ws.put_appeal(late);
        ws.put_appeal(early);
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        ws.prefetch_idle("in:0", 10_000).await.unwrap();
        let due = |ws: &mut WorkingSet, clock| {
            ws.due_idle("in:0", clock).into_iter().map(|a| a.id).collect::<Vec<_>>()
        };
        assert!(due(&mut ws, 3_000).is_empty(), "due strictly after the deadline");
        assert_eq!(due(&mut ws, 5_000), ["ap-early"]);
        assert_eq!(due(&mut ws, 10_000), ["ap-early", "ap-late"]);
        let mut closed = ws.appeal_by_id("ap-early").await.unwrap().unwrap();
        closed.status = AppealStatus::Closed;
        ws.put_appeal(closed);
        assert_eq!(due(&mut ws, 10_000), ["ap-late"], "a closed appeal is never due");
    }
}

/// The sweep bound a store holds for an appeal (`idle_check_at`), read beside the store.
async fn stored_idle_check(db: &TestDb, id: &str) -> Option<i64> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
    let bound = sqlx::query_scalar("SELECT idle_check_at FROM appeals WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    bound
}

#[tokio::test]
async fn an_appeal_whose_deadline_moved_later_comes_due_by_its_new_deadline_only() {
    for (db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        let mut moved = appeal("ap-moved", 1, "a", "v:tg:v-a");
        moved.close_deadline = Some(3_000);
        ws.put_appeal(moved);
        commit(ws).await;

        // A later message moves the deadline. PostgreSQL keeps the stored bound (the update
        // stays in place); SQLite writes the deadline.
        let mut ws = store.begin().await.unwrap();
        let mut moved = ws.appeal_by_id("ap-moved").await.unwrap().unwrap();
        moved.close_deadline = Some(9_000);
        ws.put_appeal(moved);
        commit(ws).await;
        let store_name = if db.url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
        let kept = if store_name == "PostgreSQL" { 3_000 } else { 9_000 };
        assert_eq!(stored_idle_check(&db, "ap-moved").await, Some(kept), "{store_name}");

        // A sweep before the new deadline finds the appeal not due and raises its bound.
        let mut ws = store.begin().await.unwrap();
        ws.prefetch_idle("in:0", 5_000).await.unwrap();
        assert!(ws.due_idle("in:0", 5_000).is_empty(), "not due by its old deadline");
        commit(ws).await;
        assert_eq!(stored_idle_check(&db, "ap-moved").await, Some(9_000), "{store_name}: raised");

        let mut ws = store.begin().await.unwrap();
        ws.prefetch_idle("in:0", 10_000).await.unwrap();
        let due: Vec<String> = ws.due_idle("in:0", 10_000).into_iter().map(|a| a.id).collect();
        assert_eq!(due, ["ap-moved"], "due by its new deadline");
    }
}

#[tokio::test]
async fn a_batch_of_two_partitions_finds_each_partitions_idle_appeals_by_its_own_clock() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card("a", 1, "v-a"));
        let mut first = appeal("ap-first", 1, "a", "v:tg:v-a");
        first.close_deadline = Some(3_000);
        let mut second = appeal("ap-second", 2, "a", "v:tg:v-b");
        (second.partition, second.close_deadline) = ("in:1".into(), Some(4_000));
        ws.put_appeal(first);
        ws.put_appeal(second);
        ws.advance_clock("in:0", 100).await.unwrap();
        ws.advance_clock("in:1", 200).await.unwrap();
        commit(ws).await;

        let mut ws = store.begin().await.unwrap();
        ws.prefetch_clocks(&["in:0", "in:1", "in:2"]).await.unwrap();
        assert_eq!(ws.clock("in:1").await.unwrap(), Some(200));
        assert_eq!(ws.clock("in:2").await.unwrap(), None, "a partition never seen has no clock");
        ws.prefetch_idle("in:0", 10_000).await.unwrap();
        ws.prefetch_idle("in:1", 10_000).await.unwrap();
        let due = |ws: &mut WorkingSet, partition, clock| {
            ws.due_idle(partition, clock).into_iter().map(|a| a.id).collect::<Vec<_>>()
        };
        assert_eq!(due(&mut ws, "in:0", 10_000), ["ap-first"]);
        assert_eq!(due(&mut ws, "in:1", 10_000), ["ap-second"]);
        assert!(due(&mut ws, "in:1", 3_500).is_empty(), "each by its own deadline");
    }
}

#[tokio::test]
async fn the_ledger_of_a_card_lists_the_merges_of_the_cards_it_absorbed_oldest_first() {
    for (_db, store) in stores().await {
        let mut ws = store.begin().await.unwrap();
        for (id, created) in [("a", 1), ("b", 2), ("c", 3)] {
            ws.put_client(card(id, created, &format!("v-{id}")));
        }
        merge(&mut ws, "b", "c", 8_000).await;
        commit(ws).await;
        let mut ws = store.begin().await.unwrap();
        merge(&mut ws, "a", "b", 9_000).await;
        commit(ws).await;

        assert_eq!(
            store.absorbed_ids("a").await.unwrap(),
            ["b", "c"],
            "c was repointed to the final survivor"
        );
        let ledger = store.merge_ledger(PROJECT, "a").await.unwrap();
        let merges: Vec<(&str, &str)> =
            ledger.iter().map(|m| (m.survivor_id.as_str(), m.absorbed_ids[0].as_str())).collect();
        assert_eq!(merges, [("b", "c"), ("a", "b")]);
    }
}

#[tokio::test]
async fn a_sqlite_wal_grown_past_its_bound_is_emptied_before_the_next_batch() {
    let db = TestDb::new(common::Kind::Sqlite).await;
    let store = db.store().await;
    let wal = format!("{}-wal", db.url.trim_start_matches("sqlite://"));
    let mut ws = store.begin().await.unwrap();
    ws.put_client(card("c1", 1, "v1"));
    commit(ws).await;
    // SQLite reads a WAL only up to its last valid frame, so a longer file stands for one
    // that grew while the checkpointer never found a moment to start it afresh.
    std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(65 << 20).unwrap();
    let mut ws = store.begin().await.unwrap();
    ws.put_client(card("c2", 2, "v2"));
    commit(ws).await;
    assert!(std::fs::metadata(&wal).unwrap().len() < 1 << 20, "the writer emptied the WAL first");
    let ws = &mut store.begin().await.unwrap();
    assert!(ws.live_client("c1").await.unwrap().is_some(), "what the WAL held is in the database");
}

#[tokio::test]
async fn the_sqlite_writer_does_not_map_its_database_file_into_memory() {
    // A mapped file's pages count in the resident size, which would then grow with the store.
    let db = TestDb::new(common::Kind::Sqlite).await;
    let store = db.store().await;
    for i in 0..3 {
        let mut ws = store.begin().await.unwrap();
        ws.put_client(card(&format!("c{i}"), i, &format!("v{i}")));
        commit(ws).await;
        let ws = &mut store.begin().await.unwrap();
        assert!(ws.live_client(&format!("c{i}")).await.unwrap().is_some());
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
    let file = db.url.trim_start_matches("sqlite://");
    assert!(
        !maps.lines().any(|l| l.ends_with(file)),
        "{file} is mapped into memory:\n{}",
        maps.lines().filter(|l| l.contains(file)).collect::<Vec<_>>().join("\n")
    );
}
