//! Mail folders, delta, messages and MIME against a scripted server.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::super::test_server::{Seen, TestServer, graph_error, json, params, reply};
use super::*;

const IMMUTABLE: &str = r#"IdType="ImmutableId""#;

fn folder(id: &str, name: &str, children: u32) -> Value {
    json!({"id": id, "displayName": name, "parentFolderId": "root", "childFolderCount": children,
           "totalItemCount": 3, "unreadItemCount": 1, "isHidden": false})
}

/// Every request asked for immutable ids, and none for a page size.
fn all_prefer_immutable_ids(requests: &[Seen]) -> bool {
    requests.iter().all(|s| s.prefer.as_deref() == Some(IMMUTABLE))
}

#[tokio::test]
async fn the_folder_tree_is_walked_across_pages_down_to_folders_with_children_only() {
    // Given two pages of top-level folders (one hidden), an Inbox with a child that has a
    // child of its own, and folders without children
    let server = TestServer::start(3599, |seen, origin| {
        let next = |path: &str| format!("{origin}/v1.0/users/u1/{path}?includeHiddenFolders=true&$skiptoken=2");
        let page2 = params(seen).contains_key("$skiptoken");
        match (seen.path.as_str(), page2) {
            ("/v1.0/users/u1/mailFolders", false) => json(
                200,
                &json!({"value": [folder("inbox", "Inbox", 1), folder("sent", "Sent Items", 0)],
                        "@odata.nextLink": next("mailFolders")}),
            ),
            ("/v1.0/users/u1/mailFolders", true) => {
                let mut hidden = folder("hidden", "Conversation History", 0);
                hidden["isHidden"] = json!(true);
                json(200, &json!({"value": [hidden]}))
            }
            ("/v1.0/users/u1/mailFolders/inbox/childFolders", false) => json(
                200,
                &json!({"value": [folder("projects", "Projects", 1)],
                        "@odata.nextLink": next("mailFolders/inbox/childFolders")}),
            ),
            ("/v1.0/users/u1/mailFolders/inbox/childFolders", true) => {
                json(200, &json!({"value": [folder("receipts", "Receipts", 0)]}))
            }
            ("/v1.0/users/u1/mailFolders/projects/childFolders", _) => {
                json(200, &json!({"value": [folder("alpha", "Alpha", 0)]}))
            }
            _ => graph_error(404, "ErrorItemNotFound"),
        }
    })
    .await;

    // When the tree is listed
    let folders = server.client().mail_folders("u1").await.unwrap();

    // Then every folder arrives once, parents before children, hidden ones included
    let names: Vec<_> = folders.iter().map(|f| (f.id.as_str(), f.is_hidden)).collect();
    assert_eq!(
        names,
        [
            ("inbox", false),
            ("sent", false),
            ("hidden", true),
            ("projects", false),
            ("receipts", false),
            ("alpha", false)
        ]
    );
    assert_eq!(
        (folders[0].display_name.as_str(), folders[0].total_item_count, folders[0].unread_item_count),
        ("Inbox", 3, 1)
    );
    // Only folders with children were asked for theirs, every request with hidden folders
    // and immutable ids
    let requests = server.graph_requests();
    let paths: Vec<_> = requests.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1.0/users/u1/mailFolders",
            "/v1.0/users/u1/mailFolders",
            "/v1.0/users/u1/mailFolders/inbox/childFolders",
            "/v1.0/users/u1/mailFolders/inbox/childFolders",
            "/v1.0/users/u1/mailFolders/projects/childFolders",
        ]
    );
    assert!(requests.iter().all(|s| params(s)["includeHiddenFolders"] == "true"));
    assert!(all_prefer_immutable_ids(&requests));
}

#[tokio::test]
async fn one_folder_is_found_by_well_known_name_and_a_missing_one_is_none() {
    let server = TestServer::start(3599, |seen, _| match seen.path.as_str() {
        "/v1.0/users/u1/mailFolders/inbox" => json(200, &folder("AAMkInbox", "Inbox", 2)),
        _ => graph_error(404, "ErrorItemNotFound"),
    })
    .await;
    let graph = server.client();

    let inbox = graph.mail_folder("u1", "inbox").await.unwrap().unwrap();
    let gone = graph.mail_folder("u1", "deleted-folder").await.unwrap();

    assert_eq!((inbox.id.as_str(), inbox.child_folder_count), ("AAMkInbox", 2));
    assert_eq!(gone, None);
    assert!(all_prefer_immutable_ids(&server.graph_requests()));
}

#[tokio::test]
async fn the_folder_delta_reports_new_folders_and_removed_ones() {
    let server = TestServer::start(3599, |_, origin| {
        json(
            200,
            &json!({"value": [folder("f1", "Projects", 0),
                              {"id": "f2", "@removed": {"reason": "deleted"}}],
                    "@odata.deltaLink": format!("{origin}/v1.0/users/u1/mailFolders/delta?$deltatoken=d1")}),
        )
    })
    .await;
    let graph = server.client().with_mail_page_size(50);

    let page = graph.mail_folders_delta(&MailFolderDeltaCursor::Start { user_id: "u1".into() }).await.unwrap();

    let [MailFolderChange::Upsert(added), MailFolderChange::Removed { id }] = page.changes.as_slice() else {
        panic!("{:?}", page.changes)
    };
    assert_eq!((added.id.as_str(), added.display_name.as_str(), id.as_str()), ("f1", "Projects", "f2"));
    assert_eq!(page.next, None);
    assert!(page.delta_link.unwrap().as_str().ends_with("$deltatoken=d1"));
    let [request] = server.graph_requests().try_into().unwrap();
    assert_eq!(request.path, "/v1.0/users/u1/mailFolders/delta");
    assert_eq!(request.prefer.as_deref(), Some(r#"IdType="ImmutableId", odata.maxpagesize=50"#));
}

fn message(id: &str, subject: &str) -> Value {
    json!({"id": id, "changeKey": format!("ck-{id}"), "subject": subject, "isRead": true,
           "parentFolderId": "inbox"})
}

#[tokio::test]
async fn message_delta_pages_lead_to_a_delta_link_with_removals_in_order() {
    // Given a folder whose delta spans two pages, the second reporting a removal
    let server = TestServer::start(3599, |seen, origin| {
        let link = |q: &str| format!("{origin}/v1.0/users/u1/mailFolders/inbox/messages/delta?{q}");
        match params(seen).get("$skiptoken").map(String::as_str) {
            None => json(
                200,
                &json!({"value": [message("m1", "Hello"), message("m2", "Invoice")],
                        "@odata.nextLink": link("$skiptoken=page2")}),
            ),
            Some("page2") => json(
                200,
                &json!({"value": [{"@odata.type": "#microsoft.graph.message", "id": "m1",
                                   "@removed": {"reason": "deleted"}}],
                        "@odata.deltaLink": link("$deltatoken=round2")}),
            ),
            Some(_) => graph_error(400, "unexpected"),
        }
    })
    .await;
    let graph = server.client().with_mail_page_size(2);

    // When the pages are followed to the delta link
    let mut cursor = MessageDeltaCursor::Start { user_id: "u1".into(), folder_id: "inbox".into() };
    let mut changes = Vec::new();
    let delta_link = loop {
        let page = graph.message_delta(&cursor).await.unwrap();
        changes.extend(page.changes);
        match (page.next, page.delta_link) {
            (Some(next), _) => cursor = MessageDeltaCursor::Link(next),
            (None, Some(delta)) => break delta,
            (None, None) => panic!("page without links"),
        }
    };

    // Then the changes arrive in order and the delta link is kept for the next round
    let seen: Vec<_> = changes
        .iter()
        .map(|c| match c {
            MessageChange::Upsert(m) => format!("+{} {}", m.id, m.subject.as_deref().unwrap_or("")),
            MessageChange::Removed { id } => format!("-{id}"),
        })
        .collect();
    assert_eq!(seen, ["+m1 Hello", "+m2 Invoice", "-m1"]);
    assert!(delta_link.as_str().ends_with("$deltatoken=round2"));
    // The $select went on the first request only; both asked for immutable ids and the page size
    let requests = server.graph_requests();
    assert!(requests.iter().all(|s| s.path == "/v1.0/users/u1/mailFolders/inbox/messages/delta"));
    let select = params(&requests[0])["$select"].clone();
    assert!(select.starts_with("id,changeKey,lastModifiedDateTime,") && select.contains(",flag,"), "{select}");
    assert_eq!(params(&requests[1]).get("$select"), None);
    assert!(requests.iter().all(|s| s.prefer.as_deref() == Some(r#"IdType="ImmutableId", odata.maxpagesize=2"#)));
}

#[tokio::test]
async fn an_expired_message_delta_link_asks_for_a_resync() {
    // Given Graph no longer knows the sync state behind a stored link
    let server = TestServer::start(3599, |seen, _| match seen.query.as_deref() {
        Some(q) if q.contains("gone") => graph_error(410, "SyncStateNotFound"),
        _ => graph_error(400, "SyncStateInvalid"),
    })
    .await;
    let graph = server.client();
    let link = |token: &str| {
        let url = format!("{}/v1.0/users/u1/mailFolders/inbox/messages/delta?$deltatoken={token}", server.origin);
        MessageDeltaCursor::Link(DeltaLink::new(url))
    };

    // When the link is followed
    let gone = graph.message_delta(&link("gone")).await.unwrap_err();
    let invalid = graph.message_delta(&link("garbled")).await.unwrap_err();

    // Then the caller is told to enumerate the folder again, at once
    assert_eq!(gone, GraphError::ResyncRequired { restart: None });
    assert!(gone.is_resync() && !gone.is_retryable());
    assert!(invalid.is_resync(), "{invalid:?}");
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn every_variant_of_a_refused_mail_delta_link_asks_for_a_resync() {
    // Given Graph refuses stored links as Exchange does in the wild (graph-facts §13.3)
    let server = TestServer::start(3599, |seen, _| {
        let q = seen.query.clone().unwrap_or_default();
        let token = q.rsplit('=').next().unwrap_or_default().to_owned();
        let (status, code) = token.split_once('-').unwrap_or(("400", "x"));
        graph_error(status.parse().unwrap_or(400), code)
    })
    .await;
    let graph = server.client();
    let variants = [
        "400-SyncStateNotFound",
        "404-ErrorSyncStateNotFound",
        "410-ErrorInvalidSyncStateData",
        "400-invalidDeltaToken",
        "404-ErrorItemNotFound",
        "400-somethingElse",
    ];
    for token in variants {
        // When a message delta link and a folder delta link are followed
        let messages = format!("{}/v1.0/users/u1/mailFolders/inbox/messages/delta?$deltatoken={token}", server.origin);
        let folders = format!("{}/v1.0/users/u1/mailFolders/delta?$deltatoken={token}", server.origin);
        let m = graph.message_delta(&MessageDeltaCursor::Link(DeltaLink::new(messages))).await.unwrap_err();
        let f = graph.mail_folders_delta(&MailFolderDeltaCursor::Link(DeltaLink::new(folders))).await.unwrap_err();

        // Then both say: enumerate again
        assert!(m.is_resync() && f.is_resync(), "{token}: {m:?} {f:?}");
    }
    // But a 404 on a fresh start is Graph saying the folder is not there
    let start = MessageDeltaCursor::Start { user_id: "u1".into(), folder_id: "404-ErrorItemNotFound".into() };
    let fresh = TestServer::start(3599, |_, _| graph_error(404, "ErrorItemNotFound")).await;
    assert_eq!(fresh.client().message_delta(&start).await.unwrap_err(), GraphError::NotFound);
    // And throttling, auth and a refused mailbox stay what they are
    for (status, code) in [(403, "ErrorAccessDenied"), (404, "MailboxNotEnabledForRESTAPI")] {
        let refusing = TestServer::start(3599, move |_, _| graph_error(status, code)).await;
        let link = format!("{}/v1.0/users/u1/mailFolders/inbox/messages/delta?$deltatoken=t", refusing.origin);
        let err = refusing.client().message_delta(&MessageDeltaCursor::Link(DeltaLink::new(link))).await.unwrap_err();
        assert!(!err.is_resync() && err.is_mailbox_unavailable(), "{err:?}");
    }
}

#[tokio::test]
async fn a_message_is_read_with_its_recipients_flag_and_dates_and_a_missing_one_is_none() {
    let server = TestServer::start(3599, |seen, _| match seen.path.as_str() {
        "/v1.0/users/u1/messages/m1" => json(
            200,
            &json!({
                "id": "m1", "changeKey": "CQAAAB", "subject": "Quarterly report",
                "receivedDateTime": "2024-01-02T03:04:05Z", "sentDateTime": "2024-01-02T03:04:00Z",
                "lastModifiedDateTime": "not a date", "createdDateTime": null,
                "from": {"emailAddress": {"name": "Ann", "address": "ann@example.com"}},
                "sender": {"emailAddress": {"address": "ann@example.com"}},
                "toRecipients": [{"emailAddress": {"name": "Bob", "address": "bob@example.com"}}, {}],
                "ccRecipients": null,
                "internetMessageId": "<abc@example.com>", "conversationId": "conv-1",
                "parentFolderId": "inbox", "isRead": false, "isDraft": false,
                "flag": {"flagStatus": "flagged"}, "importance": "high", "hasAttachments": true,
                "categories": ["Red category"], "someFutureField": {"x": 1}
            }),
        ),
        _ => graph_error(404, "ErrorItemNotFound"),
    })
    .await;
    let graph = server.client();

    let message = graph.get_message("u1", "m1").await.unwrap().unwrap();
    let gone = graph.get_message("u1", "gone").await.unwrap();

    let time = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
    assert_eq!(
        message,
        Message {
            id: "m1".into(),
            change_key: Some("CQAAAB".into()),
            last_modified: None,
            received: time("2024-01-02T03:04:05Z"),
            sent: time("2024-01-02T03:04:00Z"),
            created: None,
            subject: Some("Quarterly report".into()),
            from: Some(Recipient::new(Some("Ann"), "ann@example.com")),
            sender: Some(Recipient::new(None, "ann@example.com")),
            to: vec![Recipient::new(Some("Bob"), "bob@example.com")],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            internet_message_id: Some("<abc@example.com>".into()),
            conversation_id: Some("conv-1".into()),
            parent_folder_id: Some("inbox".into()),
            is_read: false,
            is_draft: false,
            flag_status: Some("flagged".into()),
            importance: Some("high".into()),
            has_attachments: true,
            categories: vec!["Red category".into()],
        }
    );
    assert_eq!(gone, None);
    let requests = server.graph_requests();
    assert_eq!(params(&requests[0])["$select"], MESSAGE_SELECT);
    assert!(all_prefer_immutable_ids(&requests));
}

#[tokio::test]
async fn the_mime_of_a_message_streams_in_chunks_and_a_missing_one_is_not_found() {
    // Given a message whose MIME arrives in several chunks
    let server = TestServer::start(3599, |seen, _| match seen.path.as_str() {
        "/v1.0/users/u1/messages/m1/$value" => {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
                vec![Ok(bytes::Bytes::from_static(b"Subject: Hi\r\n")), Ok(bytes::Bytes::from_static(b"\r\nBody\r\n"))];
            let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
            reply(200, &[("content-type", "message/rfc822"), ("content-length", "21")], body)
        }
        _ => graph_error(404, "ErrorItemNotFound"),
    })
    .await;
    let graph = server.client();

    // When it is downloaded
    let download = graph.message_mime("u1", "m1").await.unwrap();
    let missing = graph.message_mime("u1", "gone").await.unwrap_err();

    // Then the bytes are exactly the MIME, and a missing message says so
    assert_eq!(download.total_len, Some(21));
    let chunks: Vec<_> = download.stream.collect().await;
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    assert_eq!(bytes, b"Subject: Hi\r\n\r\nBody\r\n");
    assert!(missing.is_not_found());
    let requests = server.graph_requests();
    assert!(all_prefer_immutable_ids(&requests));
    assert_eq!(requests[0].auth.as_deref(), Some("Bearer tok-1"));
}

#[tokio::test]
async fn mailbox_concurrency_throttling_comes_back_with_its_retry_after() {
    // Given Exchange refuses a fifth concurrent request for the mailbox, once briefly and
    // then for longer than the client waits inline
    let server = TestServer::start(3599, |seen, _| {
        let body = json!({"error": {"code": "ApplicationThrottled",
                                    "message": "Application is over its MailboxConcurrency limit."}})
        .to_string();
        let wait = if seen.nth == 1 { "0" } else { "30" };
        reply(429, &[("retry-after", wait), ("content-type", "application/json")], body)
    })
    .await;
    let graph = server.client();

    // When a delta page is asked for
    let cursor = MessageDeltaCursor::Start { user_id: "u1".into(), folder_id: "inbox".into() };
    let err = graph.message_delta(&cursor).await.unwrap_err();

    // Then the short wait was taken inline, the long one handed back to share with the
    // other workers of the mailbox
    assert_eq!(err, GraphError::Throttled { retry_after: Duration::from_secs(30), status: 429 });
    assert!(err.is_throttled() && err.is_retryable());
    assert_eq!(server.graph_requests().len(), 2);
}

#[test]
fn message_delta_cursors_never_print_their_link() {
    let cursor = MessageDeltaCursor::Link(DeltaLink::new("https://g.example/delta?$deltatoken=SECRET"));
    let page =
        MessageDeltaPage { changes: vec![], next: None, delta_link: Some(DeltaLink::new("x?$deltatoken=SECRET")) };
    assert!(!format!("{cursor:?} {page:?}").contains("SECRET"));
}
