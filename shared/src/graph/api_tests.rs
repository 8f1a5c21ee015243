//! Delta, content and subscriptions against a scripted server.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use serde_json::json;

use super::test_server::{TestServer, graph_error, json, params, reply};
use super::{DeltaCursor, DeltaLink, Download, GraphError, NewSubscription};

const CONTENT: &[u8] = b"0123456789abcdefghij";

async fn collect(download: Download) -> Result<Vec<u8>, GraphError> {
    let chunks: Vec<Result<Bytes, GraphError>> = download.stream.collect().await;
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn delta_pages_are_followed_from_start_to_the_delta_link() {
    // Given a drive whose enumeration spans two pages
    let server = TestServer::start(3599, |seen, origin| {
        let link = |t: &str| format!("{origin}/v1.0/drives/d1/root/delta?token={t}");
        match params(seen).get("token").map(String::as_str) {
            None => json(
                200,
                &json!({
                "value": [{"id": "root", "root": {}, "folder": {}, "parentReference": {"driveId": "d1"}},
                          {"id": "f1", "name": "a.txt", "file": {}, "parentReference": {"id": "root"}}],
                "@odata.nextLink": link("page2")}),
            ),
            Some("page2") => json(
                200,
                &json!({
                "value": [{"id": "f1", "deleted": {}, "parentReference": {"id": "root"}}],
                "@odata.deltaLink": link("next-round")}),
            ),
            Some("latest") => json(200, &json!({"value": [], "@odata.deltaLink": link("now")})),
            Some(_) => graph_error(400, "invalidToken"),
        }
    })
    .await;
    let graph = server.client();

    // When the pages are followed until a delta link comes back
    let mut cursor = DeltaCursor::Start { drive_id: "d1".into() };
    let mut items = Vec::new();
    let delta = loop {
        let page = graph.delta(&cursor).await.unwrap();
        items.extend(page.items);
        match (page.next, page.delta) {
            (Some(next), _) => cursor = DeltaCursor::Link(next),
            (None, Some(delta)) => break delta,
            (None, None) => panic!("page without links"),
        }
    };

    // Then every occurrence arrives in order, with the drive filled in from the link
    let seen: Vec<_> = items.iter().map(|i| (i.id.as_str(), i.drive_id.as_str(), i.deleted)).collect();
    assert_eq!(seen, [("root", "d1", false), ("f1", "d1", false), ("f1", "d1", true)]);
    assert!(delta.as_str().ends_with("token=next-round"));
    let paths: Vec<_> = server.graph_requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/v1.0/drives/d1/root/delta"; 2]);

    let latest = graph.delta(&DeltaCursor::Latest { drive_id: "d1".into() }).await.unwrap();
    assert!(latest.items.is_empty() && latest.delta.unwrap().as_str().ends_with("token=now"));
}

#[tokio::test]
async fn an_expired_delta_token_asks_for_a_resync_with_the_restart_link() {
    let server = TestServer::start(3599, |_, origin| {
        let restart = format!("{origin}/v1.0/drives/d1/root/delta?token=restart");
        reply(410, &[("location", restart.as_str())], r#"{"error":{"code":"resyncRequired"}}"#)
    })
    .await;
    let stale = DeltaLink::new(format!("{}/v1.0/drives/d1/root/delta?token=old", server.origin));

    let err = server.client().delta(&DeltaCursor::Link(stale)).await.unwrap_err();

    assert!(err.is_resync() && !err.is_retryable());
    let GraphError::ResyncRequired { restart: Some(link) } = err else { panic!("{err:?}") };
    assert!(link.as_str().ends_with("token=restart"));
}

#[tokio::test]
async fn one_unusable_item_does_not_fail_its_delta_page() {
    // Given a page with one item whose size is not a number
    let server = TestServer::start(3599, |_, origin| {
        json(
            200,
            &json!({
            "value": [{"id": "f1", "name": "a.txt", "size": 3, "file": {}, "parentReference": {"id": "root"}},
                      {"id": "f2", "name": "b.txt", "size": "three", "file": {}, "parentReference": {"id": "root"}}],
            "@odata.deltaLink": format!("{origin}/v1.0/drives/d1/root/delta?token=next")}),
        )
    })
    .await;

    // When the page is read
    let page = server.client().delta(&DeltaCursor::Start { drive_id: "d1".into() }).await.unwrap();

    // Then the good item is there and the bad one is named with its reason
    assert_eq!(page.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["f1"]);
    assert_eq!(page.unusable.len(), 1);
    assert_eq!(page.unusable[0].id.as_deref(), Some("f2"));
    assert_eq!(page.unusable[0].reason, "`size` is a string, expected u64");
    assert!(page.delta.is_some());
}

/// `/content` redirects to `/blob`, which serves `CONTENT` honouring Range unless told not to.
async fn content_server(honour_range: bool, expire_first_url: bool) -> TestServer {
    TestServer::start(3599, move |seen, origin| match seen.path.as_str() {
        "/v1.0/drives/d1/items/gone/content" => graph_error(404, "itemNotFound"),
        "/v1.0/drives/d1/items/i1/content" => {
            let target = format!("{origin}/blob/i1?sig=pre-auth-{}", seen.nth);
            reply(302, &[("location", target.as_str())], "")
        }
        "/blob/i1" if expire_first_url && seen.nth == 1 => reply(403, &[], "expired"),
        "/blob/i1" => match seen.range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(from) if honour_range => {
                let start: usize = from.trim_end_matches('-').parse().unwrap();
                let range = format!("bytes {start}-{}/{}", CONTENT.len() - 1, CONTENT.len());
                reply(206, &[("content-range", range.as_str())], &CONTENT[start..])
            }
            _ => reply(200, &[], CONTENT),
        },
        _ => graph_error(404, "itemNotFound"),
    })
    .await
}

#[tokio::test]
async fn content_is_fetched_through_the_redirect_without_our_token() {
    let server = content_server(true, false).await;

    let download = server.client().download("d1", "i1", 0).await.unwrap();

    assert_eq!((download.offset, download.total_len), (0, Some(CONTENT.len() as u64)));
    assert_eq!(collect(download).await.unwrap(), CONTENT);
    let requests = server.graph_requests();
    assert_eq!(requests[0].auth.as_deref(), Some("Bearer tok-1"));
    assert_eq!((requests[1].path.as_str(), requests[1].auth.as_ref()), ("/blob/i1", None));
    assert_eq!(requests[1].range, None);
}

#[tokio::test]
async fn a_download_resumes_from_an_offset_with_a_range_request() {
    let server = content_server(true, false).await;

    let download = server.client().download("d1", "i1", 7).await.unwrap();

    assert_eq!((download.offset, download.total_len), (7, Some(CONTENT.len() as u64)));
    assert_eq!(collect(download).await.unwrap(), &CONTENT[7..]);
    assert_eq!(server.graph_requests()[1].range.as_deref(), Some("bytes=7-"));
}

#[tokio::test]
async fn a_resume_answered_with_the_whole_file_skips_to_the_offset() {
    // Given a download URL that ignores Range (graph-facts §5, §13.6)
    let server = content_server(false, false).await;

    // When a download resumes at byte 7
    let download = server.client().download("d1", "i1", 7).await.unwrap();

    // Then it starts at byte 7 of the whole file, whose length Content-Length gave
    assert_eq!((download.offset, download.total_len), (7, Some(CONTENT.len() as u64)));
    assert_eq!(collect(download).await.unwrap(), &CONTENT[7..]);
    assert_eq!(server.graph_requests()[1].range.as_deref(), Some("bytes=7-"));
}

/// `/content` redirects to `/blob`, which ignores Range and streams `body` in `chunks`
/// pieces, without a Content-Length when `chunked`.
async fn whole_body_server(body: &'static [u8], chunks: usize, chunked: bool) -> TestServer {
    TestServer::start(3599, move |seen, origin| {
        if seen.path.ends_with("/content") {
            let target = format!("{origin}/blob/x");
            return reply(302, &[("location", target.as_str())], "");
        }
        let size = body.len().div_ceil(chunks).max(1);
        let pieces: Vec<Result<Bytes, std::io::Error>> = body.chunks(size).map(|c| Ok(Bytes::from_static(c))).collect();
        let stream = axum::body::Body::from_stream(futures::stream::iter(pieces));
        let length = body.len().to_string();
        let headers: &[(&str, &str)] = if chunked { &[] } else { &[("content-length", length.as_str())] };
        reply(200, headers, stream)
    })
    .await
}

#[tokio::test]
async fn a_whole_body_is_skipped_to_the_offset_across_chunk_boundaries() {
    for chunked in [false, true] {
        let server = whole_body_server(CONTENT, 4, chunked).await;
        let graph = server.client();
        for offset in [1, 5, 6, 13, 19, 20] {
            // When a resume at `offset` is answered with the whole body, in pieces
            let download = graph.download("d1", "i1", offset as u64).await.unwrap();

            // Then exactly the bytes from `offset` on arrive
            let expected_len = (!chunked).then_some(CONTENT.len() as u64);
            assert_eq!((download.offset, download.total_len), (offset as u64, expected_len));
            assert_eq!(collect(download).await.unwrap(), &CONTENT[offset..], "offset {offset}, chunked {chunked}");
        }
    }
}

#[tokio::test]
async fn content_served_without_a_redirect_resumes_from_the_offset_too() {
    let server = TestServer::start(3599, |_, _| reply(200, &[], CONTENT)).await;

    let download = server.client().download("d1", "i1", 12).await.unwrap();

    assert_eq!((download.offset, download.total_len), (12, Some(CONTENT.len() as u64)));
    assert_eq!(collect(download).await.unwrap(), &CONTENT[12..]);
}

#[tokio::test]
async fn a_whole_body_shorter_than_the_offset_is_never_taken_for_a_complete_one() {
    // Given the file shrank to 20 bytes since the download began
    let graph_with_length = whole_body_server(CONTENT, 2, false).await;
    let err = graph_with_length.client().download("d1", "i1", 25).await.unwrap_err();
    assert!(matches!(err, GraphError::Transient { .. }), "{err:?}");

    // Without a Content-Length the shortfall shows when the body ends
    let chunked = whole_body_server(CONTENT, 2, true).await;
    let download = chunked.client().download("d1", "i1", 25).await.unwrap();
    let err = collect(download).await.unwrap_err();
    assert!(matches!(err, GraphError::Transient { .. }), "{err:?}");
}

#[tokio::test]
async fn an_expired_download_url_is_replaced_once() {
    let server = content_server(true, true).await;

    let download = server.client().download("d1", "i1", 0).await.unwrap();

    assert_eq!(collect(download).await.unwrap(), CONTENT);
    let paths: Vec<_> = server.graph_requests().into_iter().map(|s| s.path).collect();
    let content = "/v1.0/drives/d1/items/i1/content";
    assert_eq!(paths, [content, "/blob/i1", content, "/blob/i1"]);
}

#[tokio::test]
async fn a_missing_item_downloads_as_not_found() {
    let server = content_server(true, false).await;

    let err = server.client().download("d1", "gone", 0).await.unwrap_err();

    assert_eq!(err, GraphError::NotFound);
}

#[tokio::test]
async fn a_body_cut_short_ends_the_stream_with_a_transient_error() {
    // Given the content server promises 1000 bytes and drops the connection after 10
    let server = TestServer::start(3599, |seen, origin| {
        if seen.path.ends_with("/content") {
            let target = format!("{origin}/blob/x");
            return reply(302, &[("location", target.as_str())], "");
        }
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"0123456789")), Err(std::io::Error::other("connection reset"))];
        // Paced, so the first chunk is on the wire before the reset.
        let paced = futures::stream::iter(chunks).then(|chunk| async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            chunk
        });
        let body = axum::body::Body::from_stream(paced);
        reply(200, &[("content-length", "1000")], body)
    })
    .await;

    let download = server.client().download("d1", "i1", 0).await.unwrap();

    assert_eq!(download.total_len, Some(1000));
    let err = collect(download).await.unwrap_err();
    assert!(matches!(err, GraphError::Transient { .. }), "{err:?}");
}

fn new_subscription() -> NewSubscription {
    NewSubscription {
        resource: "/drives/d1/root".into(),
        change_type: "updated".into(),
        notification_url: "https://hook.example/graph/notifications".into(),
        lifecycle_notification_url: Some("https://hook.example/graph/lifecycle".into()),
        expiration: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap(),
        client_state: "state-secret".into(),
        security_webhooks: true,
    }
}

#[tokio::test]
async fn subscriptions_are_created_renewed_reauthorized_and_deleted() {
    let server = TestServer::start(3599, |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/v1.0/subscriptions") | ("PATCH", "/v1.0/subscriptions/s1") => {
            let sent: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
            json(
                if seen.method == "POST" { 201 } else { 200 },
                &json!({
                "id": "s1", "resource": "/drives/d1/root", "changeType": "updated",
                "expirationDateTime": sent["expirationDateTime"]}),
            )
        }
        ("POST", "/v1.0/subscriptions/s1/reauthorize") => reply(204, &[], ""),
        ("DELETE", "/v1.0/subscriptions/s1") => reply(204, &[], ""),
        _ => graph_error(404, "itemNotFound"),
    })
    .await;
    let graph = server.client();
    let later = Utc.with_ymd_and_hms(2030, 1, 20, 0, 0, 0).unwrap();

    let created = graph.create_subscription(&new_subscription()).await.unwrap();
    let renewed = graph.renew_subscription(&created.id, later).await.unwrap();
    graph.reauthorize_subscription("s1").await.unwrap();
    graph.delete_subscription("s1").await.unwrap();
    graph.delete_subscription("already-gone").await.unwrap();

    assert_eq!((created.id.as_str(), created.expiration), ("s1", new_subscription().expiration));
    assert_eq!(renewed.expiration, later);
    let sent: serde_json::Value = serde_json::from_str(&server.graph_requests()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({
        "changeType": "updated", "resource": "/drives/d1/root",
        "notificationUrl": "https://hook.example/graph/notifications",
        "lifecycleNotificationUrl": "https://hook.example/graph/lifecycle",
        "expirationDateTime": "2030-01-02T03:04:05.000Z", "clientState": "state-secret"})
    );
    let prefer = server.graph_requests()[0].prefer.clone();
    assert_eq!(prefer.as_deref(), Some("includesecuritywebhooks"), "sharing changes notify too");
}

#[tokio::test]
async fn subscriptions_are_listed_across_pages() {
    // Given an app with three subscriptions, listed two a page
    let server = TestServer::start(3599, |seen, origin| {
        let sub = |id: &str, resource: &str| {
            json!({"id": id, "resource": resource, "changeType": "updated", "clientState": null,
                "notificationUrl": "https://hook.example/n", "expirationDateTime": "2030-01-02T03:04:05Z"})
        };
        match params(seen).get("$skiptoken").map(String::as_str) {
            None => json(
                200,
                &json!({"value": [sub("s1", "drives/d1/root"), sub("s2", "users/u1/messages")],
                    "@odata.nextLink": format!("{origin}/v1.0/subscriptions?$skiptoken=p2")}),
            ),
            Some("p2") => json(200, &json!({"value": [sub("s3", "drives/d2/root")]})),
            Some(_) => graph_error(400, "invalidRequest"),
        }
    })
    .await;

    // When they are listed
    let listed = server.client().list_subscriptions().await.unwrap();

    // Then every page is followed
    let ids: Vec<(&str, &str)> = listed.iter().map(|s| (s.id.as_str(), s.resource.as_str())).collect();
    assert_eq!(ids, [("s1", "drives/d1/root"), ("s2", "users/u1/messages"), ("s3", "drives/d2/root")]);
    assert_eq!(listed[0].expiration, Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap());
    assert_eq!(listed[0].notification_url.as_deref(), Some("https://hook.example/n"));
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn a_failed_create_is_not_resent_blindly() {
    let server = TestServer::start(3599, |_, _| graph_error(502, "badGateway")).await;

    let err = server.client().create_subscription(&new_subscription()).await.unwrap_err();

    assert!(matches!(err, GraphError::Transient { .. }));
    assert_eq!(server.graph_requests().len(), 1);
}
