//! Mail folders, messages and attachments written against a scripted server.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::super::test_server::{TestServer, graph_error, json, params};
use super::*;

const IMMUTABLE: &str = r#"IdType="ImmutableId""#;

#[tokio::test]
async fn folders_are_created_at_the_top_or_under_a_parent_and_a_taken_name_is_a_conflict() {
    let server = TestServer::start(3599, |seen, _| {
        let body: Value = serde_json::from_str(&seen.body).unwrap_or_default();
        match (seen.path.as_str(), body["displayName"].as_str()) {
            (_, Some("Taken")) => graph_error(409, "ErrorFolderExists"),
            ("/v1.0/users/u1/mailFolders", Some(name)) | ("/v1.0/users/u1/mailFolders/p1/childFolders", Some(name)) => {
                json(201, &json!({"id": format!("id-{name}"), "displayName": name, "parentFolderId": "p1"}))
            }
            _ => graph_error(400, "unexpected"),
        }
    })
    .await;
    let graph = server.client();

    let top = graph.create_mail_folder("u1", None, "Projects").await.unwrap();
    let child = graph.create_mail_folder("u1", Some("p1"), "2024").await.unwrap();
    let taken = graph.create_mail_folder("u1", Some("p1"), "Taken").await;

    assert_eq!((top.id.as_str(), child.display_name.as_str()), ("id-Projects", "2024"));
    assert!(matches!(taken, Err(GraphError::Conflict { ref code }) if code == "ErrorFolderExists"), "{taken:?}");
    assert!(server.graph_requests().iter().all(|s| s.method == "POST" && s.prefer.as_deref() == Some(IMMUTABLE)));
}

#[tokio::test]
async fn a_message_create_is_sent_once_even_when_its_answer_is_lost() {
    // Given a server that fails the first create with a 502 (it may have been carried out)
    let server = TestServer::start(3599, |seen, _| match (seen.path.as_str(), seen.nth) {
        ("/v1.0/users/u1/mailFolders/f1/messages", 1) => graph_error(502, "BadGateway"),
        ("/v1.0/users/u1/mailFolders/f1/messages", _) => {
            let body: Value = serde_json::from_str(&seen.body).unwrap();
            json(201, &json!({"id": "new-1", "subject": body["subject"], "parentFolderId": "f1", "isDraft": false}))
        }
        _ => graph_error(400, "unexpected"),
    })
    .await;
    let graph = server.client();
    let body = json!({"subject": "Hello", "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}]});

    // When it is created, twice
    let first = graph.create_message("u1", "f1", &body).await;
    let second = graph.create_message("u1", "f1", &body).await.unwrap();

    // Then the lost answer is not resent blindly; the caller decides, and the JSON goes as is
    assert!(matches!(first, Err(GraphError::Transient { .. })), "{first:?}");
    assert_eq!((second.id.as_str(), second.subject.as_deref()), ("new-1", Some("Hello")));
    let requests = server.graph_requests();
    assert_eq!(requests.len(), 2);
    let sent: Value = serde_json::from_str(&requests[1].body).unwrap();
    assert_eq!(sent["singleValueExtendedProperties"][0]["id"], "Integer 0x0E07");
}

#[tokio::test]
async fn a_large_attachment_goes_in_fragments_without_the_bearer_and_a_lost_session_starts_over() {
    // Given an attachment of 7 MiB and a server whose first session dies at its second fragment
    let size = 7 * 1024 * 1024;
    let server = TestServer::start(3599, move |seen, origin| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/v1.0/users/u1/messages/m1/attachments/createUploadSession") => {
            json(201, &json!({"uploadUrl": format!("{origin}/upload/s{}", seen.nth)}))
        }
        ("PUT", "/upload/s1") if seen.nth == 2 => graph_error(404, "ErrorItemNotFound"),
        ("PUT", _) if seen.content_range.as_deref().is_some_and(|r| r.ends_with(&format!("{}/{size}", size - 1))) => {
            json(201, &json!({}))
        }
        ("PUT", _) => json(200, &json!({"nextExpectedRanges": []})),
        _ => graph_error(400, "unexpected"),
    })
    .await;
    let graph = server.client();
    let bytes = bytes::Bytes::from(vec![7u8; size]);

    // When it is uploaded
    let item = json!({"name": "scan.pdf", "contentType": "application/pdf", "isInline": false});
    graph.upload_attachment("u1", "m1", &item, bytes).await.unwrap();

    // Then the second session carried every byte, in fragments under 4 MB, without our token
    let requests = server.graph_requests();
    let sessions: Vec<_> = requests.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(sessions.len(), 2);
    let item: Value = serde_json::from_str(&sessions[0].body).unwrap();
    assert_eq!(
        (item["AttachmentItem"]["size"].as_u64(), item["AttachmentItem"]["name"].as_str()),
        (Some(size as u64), Some("scan.pdf"))
    );
    let second: Vec<_> = requests.iter().filter(|s| s.path == "/upload/s2").collect();
    let ranges: Vec<_> = second.iter().map(|s| s.content_range.clone().unwrap()).collect();
    assert_eq!(ranges, ["bytes 0-3145727/7340032", "bytes 3145728-6291455/7340032", "bytes 6291456-7340031/7340032"]);
    assert!(requests.iter().filter(|s| s.method == "PUT").all(|s| s.auth.is_none()));
}

#[tokio::test]
async fn a_folder_lists_its_internet_message_ids_across_pages() {
    let server = TestServer::start(3599, |seen, origin| match params(seen).get("$skiptoken").map(String::as_str) {
        None => json(
            200,
            &json!({"value": [{"id": "a", "internetMessageId": "<a@x>"}, {"id": "b"}],
                    "@odata.nextLink": format!("{origin}/v1.0/users/u1/mailFolders/f1/messages?$skiptoken=2")}),
        ),
        Some(_) => json(
            200,
            &json!({"value": [{"id": "c", "internetMessageId": "<c@x>"}, {"internetMessageId": "<no-id@x>"}]}),
        ),
    })
    .await;
    let graph = server.client();

    let listed = graph.folder_messages("u1", "f1").await.unwrap();

    let ids: Vec<_> = listed.iter().map(|m| (m.id.as_str(), m.internet_message_id.as_deref())).collect();
    assert_eq!(ids, [("a", Some("<a@x>")), ("b", None), ("c", Some("<c@x>"))]);
    let first = &server.graph_requests()[0];
    assert_eq!(params(first)["$select"], "id,internetMessageId");
    // in pages as large as Outlook serves (each page is a request of the mailbox's budget)
    assert_eq!(params(first)["$top"], "1000");
}
