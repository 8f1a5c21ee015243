//! In-process tests of mail backup with bad input: bytes that are not what the RFCs describe
//! are kept exactly, and a mailbox Graph refuses as a whole (deleted, unlicensed) loses
//! nothing already backed up.

use sha2::{Digest, Sha256};

use super::copier::{self, Copied};
use super::mail_tests::{mailbox, world};
use crate::graph::GraphError;
use crate::model::{ChangeReason, ItemJob, ItemKind, SCHEMA_VERSION};
use crate::store::{Failures, ItemHistory, SyncStates};

fn gone() -> GraphError {
    GraphError::MailboxUnavailable { code: "MailboxNotEnabledForRESTAPI".into() }
}

fn denied() -> GraphError {
    GraphError::Forbidden { code: "ErrorAccessDenied".into() }
}

#[tokio::test]
async fn bytes_that_are_not_proper_mime_are_kept_exactly() {
    // Given messages with 8-bit headers, broken base64, no MIME structure and no bytes at all
    let w = world();
    let samples: [(&str, &[u8]); 4] = [
        ("latin1", b"Subject: R\xe9union\r\nFrom: J\xe9r\xf4me <j@x.test>\r\n\r\ncaf\xe9\r\n"),
        ("b64", b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Transfer-Encoding: base64\r\n\r\n!!*%\r\n--z--"),
        ("noise", b"\xff\xfe\x00 not mime"),
        ("empty", b""),
    ];
    for (id, raw) in samples {
        w.mailbox.deliver_raw(id, "inbox", raw);
    }

    // When the mailbox is backed up
    w.sync(ChangeReason::Notification).await;

    // Then each is stored byte for byte, hashed like its bytes
    for (id, raw) in samples {
        let content = w.current(id).await.content.expect("content");
        assert_eq!(content.sha256, hex::encode(Sha256::digest(raw)), "{id}");
        assert_eq!(w.vault_bytes(&content.object).await.as_ref(), raw, "{id}");
    }
}

#[tokio::test]
async fn a_mailbox_refused_as_a_whole_keeps_every_version_and_says_why() {
    // Given a backed-up mailbox
    let w = world();
    w.mailbox.deliver("m1", "inbox", false);
    w.mailbox.deliver("m2", "archive", true);
    w.sync(ChangeReason::Notification).await;
    w.catalog.flush_index(); // the test reads the heads through the index
    let held = w.catalog.list_heads(&mailbox()).await.expect("heads");

    for (error, code) in [(gone(), "MailboxNotEnabledForRESTAPI"), (denied(), "ErrorAccessDenied")] {
        // When Graph refuses the whole mailbox and a reconcile (a full enumeration) runs
        w.mailbox.refuse(Some(error));
        w.sync(ChangeReason::Reconcile).await;

        // Then nothing is tombstoned, and the sync state says why
        w.catalog.flush_index();
        let now = w.catalog.list_heads(&mailbox()).await.expect("heads");
        assert_eq!(now, held, "no version may change because the mailbox is refused");
        let state = w.catalog.sync_state(&mailbox()).await.expect("state");
        assert!(state.unavailable.as_ref().is_some_and(|u| u.reason.contains(code)), "{:?}", state.unavailable);
        assert_eq!(super::enumerator::describe(&state), "unavailable");
    }

    // And when the mailbox answers again, the next pass completes and clears the report
    w.mailbox.refuse(None);
    w.sync(ChangeReason::Reconcile).await;
    assert!(w.catalog.sync_state(&mailbox()).await.expect("state").unavailable.is_none());
    assert!(!w.current("m1").await.deleted && !w.current("m2").await.deleted);
}

#[tokio::test]
async fn a_removal_seen_while_the_mailbox_is_gone_is_a_failure_not_a_tombstone() {
    // Given a backed-up message, and a job saying it left its folder, copied once the mailbox is gone
    let w = world();
    w.mailbox.deliver("m1", "inbox", false);
    w.sync(ChangeReason::Notification).await;
    w.mailbox.refuse(Some(gone()));
    let removed = crate::pipeline::state::removed("m1".into(), ItemKind::Message, Some("inbox"));
    let job = ItemJob {
        v: SCHEMA_VERSION,
        container: mailbox(),
        item: removed,
        observed_at: chrono::Utc::now(),
        scan_epoch: None,
        deferrals: 0,
        confirm_gone: false,
    };

    // When the copier handles it
    let outcome = copier::copy(&w.copier, &job).await.expect("copy");

    // Then the message stays current and the failure is reported for the item
    assert!(matches!(outcome, Copied::Failed(_)), "{outcome:?}");
    assert!(!w.current("m1").await.deleted);
    let failures = w.catalog.failures(&mailbox()).await.expect("failures");
    assert!(failures.iter().any(|f| f.key.item_id == "m1" && f.reason.contains("MailboxNotEnabledForRESTAPI")));
}
