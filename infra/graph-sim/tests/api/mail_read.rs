//! Exchange mail, read side: folders, messages, MIME, delta, immutable ids,
//! refusals and expired delta tokens, all checked against the admin ground truth.

use std::collections::{HashMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{expect, fast_config, sha256_hex, start};

const IMMUTABLE: &str = r#"IdType="ImmutableId""#;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn ids_of(items: &[Value]) -> HashSet<String> {
    items.iter().map(|i| s(&i["id"])).collect()
}

/// Ground-truth messages of the folder at `path`.
fn truth_in(truth: &Value, path: &str) -> Vec<Value> {
    let all = truth["messages"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|m| m["folder_path"] == path).collect()
}

#[tokio::test]
async fn the_folder_tree_is_top_level_first_then_children_and_hidden_only_on_request() {
    // Given a mailbox with nested custom folders and a hidden one
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 30, "folders": 8})).await;
    let truth = sim.mailbox_truth(&user).await;

    // When the top level is listed with and without hidden folders, three per page
    let (mut visible, mut url) = (Vec::new(), format!("/users/{user}/mailFolders?$top=3"));
    loop {
        let page = sim.get_json(&url).await;
        visible.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    let all_top = sim.get_json(&format!("/users/{user}/mailFolders?includeHiddenFolders=true&$top=50")).await;
    let all_top = all_top["value"].as_array().cloned().unwrap_or_default();

    // Then only top-level folders come back, the hidden one only when asked for
    let root = s(&all_top[0]["parentFolderId"]);
    assert!(all_top.iter().all(|f| s(&f["parentFolderId"]) == root));
    let names: HashSet<String> = visible.iter().map(|f| s(&f["displayName"])).collect();
    for name in ["Inbox", "Sent Items", "Deleted Items", "Drafts", "Archive", "Junk Email"] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(!names.contains("Sync Issues"));
    let hidden: Vec<&Value> = all_top.iter().filter(|f| f["isHidden"] == true).collect();
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0]["displayName"], "Sync Issues");

    // And walking childFolders reaches exactly the ground-truth tree, with its counts
    let mut found: Vec<Value> = all_top.clone();
    let mut at = 0;
    while at < found.len() {
        let f = found[at].clone();
        if f["childFolderCount"].as_u64().unwrap_or(0) > 0 {
            let kids = sim.get_json(&format!("/users/{user}/mailFolders/{}/childFolders?$top=100", s(&f["id"]))).await;
            let kids = kids["value"].as_array().cloned().unwrap_or_default();
            assert_eq!(kids.len() as u64, f["childFolderCount"].as_u64().unwrap_or(0));
            found.extend(kids);
        }
        at += 1;
    }
    let truth_folders = truth["folders"].as_array().cloned().unwrap_or_default();
    assert_eq!(ids_of(&found), ids_of(&truth_folders));
    assert!(truth_folders.iter().any(|f| s(&f["path"]).matches('/').count() >= 3), "nested folders seeded");
    let by_id: HashMap<String, &Value> = found.iter().map(|f| (s(&f["id"]), f)).collect();
    for f in &truth_folders {
        let listed = by_id[&s(&f["id"])];
        assert_eq!((&listed["totalItemCount"], &listed["unreadItemCount"]), (&f["total"], &f["unread"]));
    }

    // And well-known names work as ids
    let inbox = sim.get_json(&format!("/users/{user}/mailFolders/inbox")).await;
    assert_eq!(inbox["displayName"], "Inbox");
    assert_eq!(sim.get_json(&format!("/users/{user}/mailFolders/{}", s(&inbox["id"]))).await["id"], inbox["id"]);
}

#[tokio::test]
async fn users_without_a_usable_mailbox_are_refused_as_exchange_refuses_them() {
    let sim = start(fast_config()).await;
    sim.post_admin(
        "/seed",
        json!({"users": [
            {"user_principal_name": "nomail@contoso.test", "has_mailbox": false},
            {"user_principal_name": "unlicensed@contoso.test", "licensed": false},
        ]}),
    )
    .await;
    let cases = [
        ("nomail@contoso.test", StatusCode::NOT_FOUND, "MailboxNotEnabledForRESTAPI"),
        ("unlicensed@contoso.test", StatusCode::FORBIDDEN, "ErrorAccessDenied"),
        ("ghost@contoso.test", StatusCode::NOT_FOUND, "ErrorInvalidUser"),
    ];
    for (user, status, code) in cases {
        for path in ["mailFolders", "messages", "mailFolders/inbox/messages/delta"] {
            let err = expect(sim.get(&format!("/users/{user}/{path}")).await, status).await;
            assert_eq!(err["error"]["code"], code, "{user} {path}");
        }
    }
}

#[tokio::test]
async fn message_delta_pages_to_a_delta_link_that_then_reports_only_changes() {
    // Given an Inbox enumerated through delta, five per page, with immutable ids and a $select
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 40, "folders": 2})).await;
    let truth = sim.mailbox_truth(&user).await;
    let inbox = truth_in(&truth, "/Inbox");
    let prefer = format!("{IMMUTABLE}, odata.maxpagesize=5");
    let start_url = format!("/users/{user}/mailFolders/inbox/messages/delta?$select=subject,isRead,parentFolderId");
    let (items, link, pages) = sim.mail_delta_all(&start_url, &prefer).await;
    assert_eq!(ids_of(&items), ids_of(&inbox));
    assert_eq!(pages, inbox.len().div_ceil(5).max(1));
    assert!(items.iter().all(|m| m.get("body").is_none() && m.get("subject").is_some()), "$select is honoured");
    assert!(link.contains("$deltatoken="));

    // When the user reads one, one is moved to the archive, one hard-deleted, and mail arrives
    let (read, moved, deleted) = (s(&inbox[0]["id"]), s(&inbox[1]["id"]), s(&inbox[2]["id"]));
    let msgs = format!("/mailboxes/{user}/messages");
    sim.admin_ok(Method::PATCH, &format!("{msgs}/{read}"), json!({"is_read": true, "flag": "flagged"})).await;
    sim.admin_ok(Method::PATCH, &format!("{msgs}/{moved}"), json!({"folder": "archive"})).await;
    sim.admin_ok(Method::DELETE, &format!("{msgs}/{deleted}?hard=true"), Value::Null).await;
    let new = sim.post_admin(&msgs, json!({"subject": "Fresh news", "text": "hi"})).await;

    // Then the delta link reports exactly those four changes, with their latest state
    let (changes, next_link, _) = sim.mail_delta_all(&link, &prefer).await;
    let by_id: HashMap<String, &Value> = changes.iter().map(|c| (s(&c["id"]), c)).collect();
    assert_eq!(by_id.len(), 4, "{changes:?}");
    assert_eq!(by_id[&read]["isRead"], true);
    assert!(by_id[&read].get("@removed").is_none());
    assert_eq!(by_id[&moved]["@removed"]["reason"], "deleted");
    assert_eq!(by_id[&deleted]["@removed"]["reason"], "deleted");
    assert_eq!(by_id[&s(&new["id"])]["subject"], "Fresh news");
    assert!(by_id[&s(&new["id"])].get("body").is_none(), "the first request's $select still applies");

    // And the archive reports the moved message under the same immutable id; nothing is left over
    let archive = format!("/users/{user}/mailFolders/archive/messages/delta");
    let (archived, _, _) = sim.mail_delta_all(&archive, &prefer).await;
    assert!(ids_of(&archived).contains(&moved));
    let (none, _, _) = sim.mail_delta_all(&next_link, &prefer).await;
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn without_immutable_ids_a_moved_message_gets_a_new_id_and_the_old_one_dies() {
    // Given an Inbox enumerated with REST ids
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 12})).await;
    let start_url = format!("/users/{user}/mailFolders/inbox/messages/delta");
    let (items, link, _) = sim.mail_delta_all(&start_url, "odata.maxpagesize=50").await;
    let truth = sim.mailbox_truth(&user).await;
    let first = truth_in(&truth, "/Inbox")[0].clone();
    assert!(ids_of(&items).contains(&s(&first["rest_id"])), "REST ids without the preference");
    assert!(!ids_of(&items).contains(&s(&first["immutable_id"])));
    let old = s(&first["rest_id"]);
    assert_eq!(sim.get(&format!("/users/{user}/messages/{old}")).await.status(), StatusCode::OK);

    // When it moves
    sim.admin_ok(Method::PATCH, &format!("/mailboxes/{user}/messages/{old}"), json!({"folder": "archive"})).await;

    // Then its old REST id is dead, the new one and the immutable one work
    let after = sim.mailbox_truth(&user).await;
    let now = after["messages"].as_array().and_then(|a| a.iter().find(|m| m["id"] == first["id"]).cloned());
    let now = now.expect("still in the mailbox");
    assert_ne!(now["rest_id"], first["rest_id"]);
    let err = expect(sim.get(&format!("/users/{user}/messages/{old}")).await, StatusCode::NOT_FOUND).await;
    assert_eq!(err["error"]["code"], "ErrorItemNotFound");
    let by_new = sim.get_json(&format!("/users/{user}/messages/{}", s(&now["rest_id"]))).await;
    assert_eq!(by_new["id"], now["rest_id"]);
    let path = format!("/users/{user}/messages/{}", s(&first["immutable_id"]));
    let by_immutable: Value = expect(sim.get_with(&path, &[("prefer", IMMUTABLE)]).await, StatusCode::OK).await;
    assert_eq!(by_immutable["id"], first["immutable_id"]);
    assert_eq!(by_immutable["parentFolderId"], now["folder_id"]);

    // And the Inbox delta reports the removal under the id the client knew
    let (changes, _, _) = sim.mail_delta_all(&link, "odata.maxpagesize=50").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["id"], first["rest_id"]);
    assert!(changes[0].get("@removed").is_some());
}

#[tokio::test]
async fn seeded_mime_is_realistic_and_matches_the_ground_truth() {
    // Given a mailbox with threads, attachments, inline images and two large attachments
    let sim = start(fast_config()).await;
    let mail = json!({"messages": 40, "folders": 3, "large_attachments": [3_500_000, 4_200_000]});
    let user = sim.seed_mail(mail.clone()).await;
    let truth = sim.mailbox_truth(&user).await;
    let messages = truth["messages"].as_array().cloned().unwrap_or_default();

    // When every message's MIME is downloaded and parsed by an independent parser
    let mut parsed = Vec::new();
    for m in &messages {
        let r = sim.get_with(&format!("/users/{user}/messages/{}/$value", s(&m["id"])), &[("prefer", IMMUTABLE)]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/plain"));
        let bytes = r.bytes().await.expect("body").to_vec();
        assert_eq!(sha256_hex(&bytes), s(&m["sha256"]), "bytes match the ground truth");
        let msg = mail_parser::MessageParser::default().parse(&bytes).expect("parses as RFC 5322");
        assert_eq!(msg.subject().unwrap_or_default(), s(&m["subject"]));
        assert_eq!(msg.message_id().map(|id| format!("<{id}>")), Some(s(&m["internet_message_id"])));
        parsed.push((m.clone(), msg.in_reply_to().as_text().map(str::to_string), msg.attachment_count()));
    }

    // Then it has what real mail has
    let ids: HashSet<String> = messages.iter().map(|m| s(&m["internet_message_id"])).collect();
    let replies = parsed.iter().filter(|(_, irt, _)| irt.as_ref().is_some_and(|i| ids.contains(&format!("<{i}>"))));
    assert!(replies.count() >= 3, "threads reference earlier messages");
    assert!(messages.iter().any(|m| !s(&m["subject"]).is_ascii()), "non-ASCII subjects");
    let large: Vec<u64> = messages
        .iter()
        .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["size"].as_u64())
        .filter(|n| *n > 3_000_000)
        .collect();
    assert_eq!(large.len(), 2);
    assert!(
        messages.iter().any(|m| m["attachments"].as_array().is_some_and(|a| a.iter().any(|x| x["inline"] == true)))
    );
    let dates: Vec<String> = messages.iter().map(|m| s(&m["received"])).collect();
    let span = chrono::DateTime::parse_from_rfc3339(dates.iter().max().expect("dates"))
        .and_then(|max| chrono::DateTime::parse_from_rfc3339(dates.iter().min().expect("dates")).map(|min| max - min));
    assert!(span.expect("dates parse").num_days() > 60, "dates spread over the past");

    // And JSON metadata agrees with the MIME; reseeding gives the same bytes
    let one = &messages[0];
    let json = sim.get_json(&format!("/users/{user}/messages/{}", s(&one["rest_id"]))).await;
    assert_eq!(json["internetMessageId"], one["internet_message_id"]);
    assert_eq!(json["isRead"], one["is_read"]);
    assert_eq!(json["@odata.etag"], format!("W/\"{}\"", s(&json["changeKey"])));
    sim.seed_mail(mail).await;
    let again = sim.mailbox_truth(&user).await;
    let sums = |t: &Value| t["messages"].as_array().map(|a| a.iter().map(|m| s(&m["sha256"])).collect::<Vec<_>>());
    assert_eq!(sums(&again), sums(&truth));
}

#[tokio::test]
async fn expired_and_garbled_mail_delta_tokens_are_refused_with_exchange_codes() {
    // Given delta links for messages and for folders
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 5})).await;
    let (_, messages_link, _) =
        sim.mail_delta_all(&format!("/users/{user}/mailFolders/inbox/messages/delta"), IMMUTABLE).await;
    let (_, folders_link, _) = sim.mail_delta_all(&format!("/users/{user}/mailFolders/delta"), IMMUTABLE).await;

    // When a garbled token is sent, then the tokens are expired
    let garbled = messages_link.replace("$deltatoken=", "$deltatoken=x");
    let invalid = expect(sim.get(&garbled).await, StatusCode::BAD_REQUEST).await;
    sim.post_admin("/faults", json!({"kind": "expire_mail_delta_tokens", "user": "adele@contoso.test"})).await;

    // Then both kinds of link are gone, and a fresh enumeration works
    assert_eq!(invalid["error"]["code"], "SyncStateInvalid");
    for link in [&messages_link, &folders_link] {
        let err = expect(sim.get(link).await, StatusCode::GONE).await;
        assert_eq!(err["error"]["code"], "SyncStateNotFound");
    }
    let (items, _, _) = sim.mail_delta_all(&format!("/users/{user}/mailFolders/inbox/messages/delta"), IMMUTABLE).await;
    assert_eq!(items.len(), truth_in(&sim.mailbox_truth(&user).await, "/Inbox").len());
}

#[tokio::test]
async fn expired_mail_delta_tokens_answer_each_of_exchanges_variants() {
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 3})).await;
    let inbox = format!("/users/{user}/mailFolders/inbox/messages/delta");
    for (status, code) in [
        (400, "SyncStateNotFound"),
        (404, "ErrorSyncStateNotFound"),
        (410, "ErrorInvalidSyncStateData"),
        (400, "invalidDeltaToken"),
        (404, "ErrorInvalidSyncStateData"),
    ] {
        // Given a delta link
        let (_, link, _) = sim.mail_delta_all(&inbox, IMMUTABLE).await;

        // When the mailbox's tokens expire with this variant
        let fault = json!({"kind": "expire_mail_delta_tokens", "status": status, "code": code});
        sim.post_admin("/faults", fault).await;

        // Then the link answers it
        let err = expect(sim.get(&link).await, StatusCode::from_u16(status).expect("status")).await;
        assert_eq!(err["error"]["code"], code);
    }
    // And a variant Exchange does not use is refused
    let resp = sim.admin(Method::POST, "/faults", json!({"kind": "expire_mail_delta_tokens", "status": 409})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn folder_delta_reports_nested_new_folders_and_removed_ones() {
    // Given a folder delta link
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"folders": 2})).await;
    let (all, link, _) = sim.mail_delta_all(&format!("/users/{user}/mailFolders/delta"), IMMUTABLE).await;
    let truth = sim.mailbox_truth(&user).await;
    assert_eq!(ids_of(&all), ids_of(truth["folders"].as_array().map(Vec::as_slice).unwrap_or_default()));

    // When a nested folder is created and a custom folder deleted
    let parent =
        sim.post_admin(&format!("/mailboxes/{user}/folders"), json!({"parent": "inbox", "name": "Clients"})).await;
    let child =
        sim.post_admin(&format!("/mailboxes/{user}/folders"), json!({"parent": parent["id"], "name": "Acme"})).await;
    let doomed = truth["folders"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["well_known"].is_null() && f["hidden"] == false).cloned());
    let doomed = doomed.expect("a custom folder");
    sim.admin_ok(Method::DELETE, &format!("/mailboxes/{user}/folders/{}", s(&doomed["id"])), Value::Null).await;

    // Then the delta has the parent before its child, and the removal
    let (changes, _, _) = sim.mail_delta_all(&link, IMMUTABLE).await;
    let order: Vec<String> = changes.iter().map(|c| s(&c["id"])).collect();
    let at = |id: &Value| order.iter().position(|o| *o == s(id)).expect("reported");
    assert!(at(&parent["id"]) < at(&child["id"]));
    assert_eq!(changes[at(&child["id"])]["parentFolderId"], parent["id"]);
    assert_eq!(changes[at(&doomed["id"])]["@removed"]["reason"], "deleted");

    // And a duplicate name under the same parent is refused
    let folders = format!("/mailboxes/{user}/folders");
    let dup = sim.admin(Method::POST, &folders, json!({"parent": "inbox", "name": "clients"})).await;
    assert_eq!(expect(dup, StatusCode::CONFLICT).await["error"]["code"], "ErrorFolderExists");
}
