//! Exchange mail that is not what the RFCs describe, and mailboxes that stop answering: the
//! simulator keeps hostile MIME byte for byte, refuses what Exchange refuses (messages over
//! its size limit, a second folder of the same name under one parent) and answers a deleted or
//! unlicensed mailbox as Graph does, on every route, delta links included.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use graph_sim::SimConfig;
use graph_sim::bad_mail::samples;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{expect, fast_config, sha256_hex, start};

const IMMUTABLE: &str = r#"IdType="ImmutableId""#;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn hostile_mime_is_served_byte_for_byte_and_still_listed() {
    // Given a mailbox, and messages with 8-bit headers, broken base64, a wrong charset, no
    // MIME structure at all and no bytes at all
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 2, "folders": 0})).await;
    let mut delivered = Vec::new();
    for bad in samples() {
        let body = json!({"mime_b64": STANDARD.encode(&bad.mime)});
        let out = sim.post_admin(&format!("/mailboxes/{user}/messages"), body).await;
        delivered.push((bad, s(&out["immutable_id"])));
    }

    for (bad, id) in &delivered {
        // When its MIME is read
        let r = sim.get_with(&format!("/users/{user}/messages/{id}/$value"), &[("prefer", IMMUTABLE)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", bad.name);
        let bytes = r.bytes().await.expect("mime");

        // Then it is exactly what was delivered, and the message has JSON like any other
        assert_eq!(sha256_hex(&bytes), sha256_hex(&bad.mime), "{}", bad.name);
        let json = sim.get_json(&format!("/users/{user}/messages/{id}")).await;
        assert!(json["subject"].is_string() && json["receivedDateTime"].is_string(), "{}: {json}", bad.name);
    }
    // A message without a Message-ID has no internetMessageId, not an empty one
    let empty = &delivered.iter().find(|(b, _)| b.mime.is_empty()).expect("0-byte sample").1;
    assert!(sim.get_json(&format!("/users/{user}/messages/{empty}")).await["internetMessageId"].is_null());
    let truth = sim.mailbox_truth(&user).await;
    assert_eq!(truth["messages"].as_array().map(Vec::len), Some(2 + delivered.len()));

    // And a message Exchange refuses to hand out answers 403 while its neighbours answer
    let (refused, served) = (&delivered[0].1, &delivered[1].1);
    sim.post_admin("/faults", json!({"kind": "forbid_content", "item_id": refused})).await;
    let err = expect(sim.get(&format!("/users/{user}/messages/{refused}/$value")).await, StatusCode::FORBIDDEN).await;
    assert_eq!(err["error"]["code"], "ErrorAccessDenied");
    assert_eq!(sim.get(&format!("/users/{user}/messages/{served}/$value")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_message_over_exchanges_size_limit_is_refused_at_delivery() {
    // Given a simulator whose message size limit is 100 kB (Exchange's is 150 MB)
    let sim = start(SimConfig { mail_max_message_bytes: 100_000, ..fast_config() }).await;
    let user = sim.seed_mail(json!({"messages": 0, "folders": 0})).await;
    let deliver = format!("/mailboxes/{user}/messages");

    // When a generated message and raw MIME over the limit are delivered, they are refused
    for body in [json!({"attachments": [90_000]}), json!({"mime_b64": STANDARD.encode(vec![b'a'; 100_001])})] {
        let err = expect(sim.admin(Method::POST, &deliver, body).await, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert_eq!(err["error"]["code"], "ErrorMessageSizeExceeded");
    }

    // Then the mailbox holds nothing, and a message under the limit is accepted
    assert_eq!(sim.mailbox_truth(&user).await["messages"].as_array().map(Vec::len), Some(0));
    sim.post_admin(&deliver, json!({"attachments": [60_000]})).await;
}

#[tokio::test]
async fn a_folder_may_be_named_like_a_well_known_one_except_beside_it() {
    // Given a mailbox
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 0, "folders": 0})).await;
    let folders = format!("/mailboxes/{user}/folders");
    let inbox = s(&sim.get_json(&format!("/users/{user}/mailFolders/inbox")).await["id"]);

    // When a folder "Inbox" is made inside the Inbox, and "Deleted Items" inside the Archive
    let nested = sim.post_admin(&folders, json!({"parent": "inbox", "name": "Inbox"})).await;
    sim.post_admin(&folders, json!({"parent": "archive", "name": "Deleted Items"})).await;

    // Then they are folders of their own: the well-known names still mean the real ones
    assert_ne!(s(&nested["id"]), inbox);
    assert_eq!(s(&nested["path"]), "/Inbox/Inbox");
    assert_eq!(s(&sim.get_json(&format!("/users/{user}/mailFolders/inbox")).await["id"]), inbox);
    let kids = sim.get_json(&format!("/users/{user}/mailFolders/inbox/childFolders")).await;
    assert_eq!(kids["value"][0]["displayName"], "Inbox");

    // But a second "Deleted Items" at the top level, in any case, is refused as Exchange does
    let r = sim.admin(Method::POST, &folders, json!({"name": "deleted items"})).await;
    assert_eq!(expect(r, StatusCode::CONFLICT).await["error"]["code"], "ErrorFolderExists");
}

#[tokio::test]
async fn a_mailbox_deleted_or_unlicensed_midway_answers_like_exchange_and_comes_back_whole() {
    // Given a mailbox read through delta to a delta link
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 12, "folders": 1})).await;
    let (items, link, _) =
        sim.mail_delta_all(&format!("/users/{user}/mailFolders/inbox/messages/delta"), IMMUTABLE).await;
    let one = s(&items[0]["id"]);
    let routes = [
        format!("/users/{user}/mailFolders/delta"),
        format!("/users/{user}/messages/{one}/$value"),
        format!("/users/{user}/mailFolders/inbox"),
        link.clone(),
    ];

    // When the mailbox is deleted, then given back, then loses its licence
    let cases = [
        (json!({"has_mailbox": false}), StatusCode::NOT_FOUND, "MailboxNotEnabledForRESTAPI"),
        (json!({"has_mailbox": true, "licensed": false}), StatusCode::FORBIDDEN, "ErrorAccessDenied"),
    ];
    for (change, status, code) in cases {
        sim.admin_ok(Method::PATCH, &format!("/users/{user}"), change).await;
        // Then every route answers Exchange's refusal
        for route in &routes {
            let err = expect(sim.get(route).await, status).await;
            assert_eq!(err["error"]["code"], code, "{route}");
        }
    }

    // And with the licence back the same messages answer, and the old delta link still works
    sim.admin_ok(Method::PATCH, &format!("/users/{user}"), json!({"licensed": true})).await;
    assert_eq!(sim.get(&routes[1]).await.status(), StatusCode::OK);
    let page = sim.get_json(&link).await;
    assert_eq!(page["value"].as_array().map(Vec::len), Some(0), "nothing changed meanwhile");
}
