//! Exchange mail, restore side: messages created from JSON (with the MAPI
//! extended properties) or MIME, folders, attachments and upload sessions.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_parser::MimeHeaders;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Body, expect, fast_config, sha256_hex, start};

const IMMUTABLE: &str = r#"IdType="ImmutableId""#;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

async fn mime_of(sim: &crate::common::Sim, user: &str, id: &str) -> Vec<u8> {
    let r = sim.get_with(&format!("/users/{user}/messages/{id}/$value"), &[("prefer", IMMUTABLE)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.expect("mime").to_vec()
}

#[tokio::test]
async fn a_json_message_with_mapi_flags_is_restored_as_received_mail_with_its_headers() {
    // Given an empty mailbox
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({})).await;

    // When a message is created in the Inbox with PidTagMessageFlags = read, times and threading headers
    let body = json!({
        "subject": "Réunion — restored", "importance": "high",
        "body": {"contentType": "html", "content": "<p>Bonjour</p>"},
        "from": {"emailAddress": {"name": "Zoë", "address": "zoe@northwind.test"}},
        "toRecipients": [{"emailAddress": {"address": "adele@contoso.test"}}],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2024-01-02T03:04:05Z"},
            {"id": "SystemTime 0x0039", "value": "2024-01-02T03:04:00Z"},
            {"id": "String 0x1035", "value": "<orig-1@northwind.test>"},
            {"id": "String 0x1042", "value": "<parent@northwind.test>"},
            {"id": "String 0x1039", "value": "<root@northwind.test> <parent@northwind.test>"}]});
    let r = sim
        .send(
            Method::POST,
            &format!("/users/{user}/mailFolders/inbox/messages"),
            Body::Json(body),
            &[("prefer", IMMUTABLE)],
        )
        .await;
    let created = expect(r, StatusCode::CREATED).await;
    // And another without flags, to the mailbox's messages
    let drafts_path = format!("/users/{user}/messages");
    let r = sim.send(Method::POST, &drafts_path, Body::Json(json!({"subject": "draft"})), &[]).await;
    let draft = expect(r, StatusCode::CREATED).await;

    // Then the first is read, not a draft, dated as asked, and its MIME carries the headers
    assert_eq!((created["isDraft"].as_bool(), created["isRead"].as_bool()), (Some(false), Some(true)));
    assert_eq!(created["receivedDateTime"], "2024-01-02T03:04:05Z");
    // (created and last modified now: a restore's copy is new, however old the mail it carries)
    let modified: chrono::DateTime<chrono::Utc> = s(&created["lastModifiedDateTime"]).parse().expect("time");
    assert!(chrono::Utc::now() - modified < chrono::TimeDelta::minutes(1), "{modified}");
    assert_eq!(created["internetMessageId"], "<orig-1@northwind.test>");
    assert_eq!(created["importance"], "high");
    let mime = mime_of(&sim, &user, &s(&created["id"])).await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).expect("MIME");
    assert_eq!(parsed.subject(), Some("Réunion — restored"));
    assert_eq!(parsed.message_id(), Some("orig-1@northwind.test"));
    assert_eq!(parsed.in_reply_to().as_text(), Some("parent@northwind.test"));
    assert_eq!(parsed.references().as_text_list().map(|l| l.len()), Some(2));
    assert_eq!(parsed.body_html(0).as_deref().map(str::trim), Some("<p>Bonjour</p>"));
    // And the second is a draft in Drafts
    let drafts = sim.get_json(&format!("/users/{user}/mailFolders/drafts")).await;
    assert_eq!((draft["isDraft"].as_bool(), &draft["parentFolderId"]), (Some(true), &drafts["id"]));
}

#[tokio::test]
async fn a_mime_message_is_kept_byte_for_byte_as_a_draft_and_bad_bodies_are_refused() {
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({})).await;
    let mime = b"From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: =?UTF-8?B?Q2Fmw6k=?=\r\nMessage-ID: <m-1@example.com>\r\nDate: Tue, 2 Jan 2024 03:04:05 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n";
    let path = format!("/users/{user}/mailFolders/archive/messages");
    let plain = [("content-type", "text/plain"), ("prefer", IMMUTABLE)];

    let r = sim.send(Method::POST, &path, Body::Bytes(STANDARD.encode(mime).into_bytes()), &plain).await;
    let created = expect(r, StatusCode::CREATED).await;
    let bad = sim.send(Method::POST, &path, Body::Bytes(b"not base64 at all!".to_vec()), &plain).await;
    let huge = STANDARD.encode(vec![b'a'; 3_200_000]).into_bytes();
    let too_big = sim.send(Method::POST, &path, Body::Bytes(huge), &plain).await;

    assert_eq!((created["isDraft"].as_bool(), created["subject"].as_str()), (Some(true), Some("Café")));
    assert_eq!(mime_of(&sim, &user, &s(&created["id"])).await, mime.to_vec());
    assert_eq!(expect(bad, StatusCode::BAD_REQUEST).await["error"]["code"], "ErrorMimeContentInvalidBase64String");
    expect(too_big, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn folders_are_created_once_per_name_under_a_parent() {
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({})).await;
    let top = format!("/users/{user}/mailFolders");
    let created =
        expect(sim.send_json(Method::POST, &top, json!({"displayName": "Restored"})).await, StatusCode::CREATED).await;
    let child_path = format!("{top}/{}/childFolders", s(&created["id"]));
    let child =
        expect(sim.send_json(Method::POST, &child_path, json!({"displayName": "2024"})).await, StatusCode::CREATED)
            .await;
    let dup = sim.send_json(Method::POST, &top, json!({"displayName": "restored"})).await;

    assert_eq!(child["parentFolderId"], created["id"]);
    assert_eq!(expect(dup, StatusCode::CONFLICT).await["error"]["code"], "ErrorFolderExists");
    let listed = sim.get_json(&format!("{top}/{}", s(&created["id"]))).await;
    assert_eq!(listed["childFolderCount"], 1);
}

#[tokio::test]
async fn attachments_small_by_post_large_by_upload_session_end_up_in_the_mime() {
    // Given a restored message
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({})).await;
    let r = sim
        .send(
            Method::POST,
            &format!("/users/{user}/messages"),
            Body::Json(json!({"subject": "files"})),
            &[("prefer", IMMUTABLE)],
        )
        .await;
    let id = s(&expect(r, StatusCode::CREATED).await["id"]);
    let att = format!("/users/{user}/messages/{id}/attachments");

    // When a small file is posted, a 3 MB one is refused, and a 5 MB one goes through a session
    let small = json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt",
                       "contentType": "text/plain", "contentBytes": STANDARD.encode(b"tiny")});
    expect(sim.send_json(Method::POST, &att, small).await, StatusCode::CREATED).await;
    let big = json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "big.bin",
                     "contentBytes": STANDARD.encode(vec![1u8; 3 * 1024 * 1024])});
    expect(sim.send_json(Method::POST, &att, big).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let session = sim
        .send_json(
            Method::POST,
            &format!("{att}/createUploadSession"),
            json!({"AttachmentItem": {"attachmentType": "file", "name": "video.mp4", "size": payload.len()}}),
        )
        .await;
    let url = s(&expect(session, StatusCode::CREATED).await["uploadUrl"]);
    assert!(url.starts_with(&sim.base), "upload URL on the simulator's host");
    let put = |range: (usize, usize), auth: bool| {
        let mut req =
            sim.http.put(&url).header("content-range", format!("bytes {}-{}/{}", range.0, range.1 - 1, payload.len()));
        if auth {
            req = req.bearer_auth(&sim.token);
        }
        req.body(payload[range.0..range.1].to_vec()).send()
    };
    let with_token = put((0, 4_000_000), true).await.expect("put");
    let skipped = put((4_000_000, 5_000_000), false).await.expect("put");
    let first = put((0, 4_000_000), false).await.expect("put");
    let last = put((4_000_000, 5_000_000), false).await.expect("put");

    // Then the rules held and both attachments are on the message, bytes intact, in its MIME too
    assert_eq!(with_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(skipped.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(last.status(), StatusCode::CREATED);
    assert!(last.headers().contains_key("location"));
    let listed = sim.get_json(&att).await;
    let names: Vec<String> =
        listed["value"].as_array().map(|a| a.iter().map(|x| s(&x["name"])).collect()).unwrap_or_default();
    assert_eq!(names, ["a.txt", "video.mp4"]);
    let mime = mime_of(&sim, &user, &id).await;
    let parsed = mail_parser::MessageParser::default().parse(&mime).expect("MIME");
    let video = parsed.attachments().find(|a| a.attachment_name() == Some("video.mp4")).expect("in the MIME");
    assert_eq!(sha256_hex(video.contents()), sha256_hex(&payload));
    let message = sim.get_json(&format!("/users/{user}/messages/{id}")).await;
    assert_eq!(message["hasAttachments"], true);
}
