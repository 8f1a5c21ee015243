//! The HTTP core against a scripted server: tokens, retries, throttling.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;

use super::test_server::{SECRET, TestServer, graph_error, json, params, reply};
use super::{GraphError, ItemKind};

fn item_json() -> serde_json::Value {
    json!({"id": "i1", "name": "a.txt", "file": {}, "parentReference": {"driveId": "d1"}})
}

#[tokio::test]
async fn a_token_is_fetched_once_and_sent_on_every_call() {
    // Given a token valid for an hour
    let server = TestServer::start(3599, |_, _| json(200, &item_json())).await;
    let graph = server.client();

    // When two calls are made
    let item = graph.get_item("d1", "i1").await.unwrap().unwrap();
    graph.get_item("d1", "i1").await.unwrap();

    // Then one token request served both, with the client-credentials grant
    assert_eq!((item.id.as_str(), item.kind), ("i1", ItemKind::File));
    let tokens = server.token_requests();
    assert_eq!(tokens.len(), 1);
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(tokens[0].body.as_bytes()).into_owned().collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    let auths: Vec<_> = server.graph_requests().into_iter().map(|s| s.auth).collect();
    assert_eq!(auths, [Some("Bearer tok-1".into()), Some("Bearer tok-1".into())]);
    assert_eq!(graph.request_count(), 3);
}

#[tokio::test]
async fn a_token_close_to_expiry_is_replaced_before_use() {
    // Given tokens that are already inside the refresh margin when issued
    let server = TestServer::start(0, |_, _| json(200, &item_json())).await;
    let graph = server.client();

    graph.get_item("d1", "i1").await.unwrap();
    graph.get_item("d1", "i1").await.unwrap();

    let auths: Vec<_> = server.graph_requests().into_iter().map(|s| s.auth).collect();
    assert_eq!(auths, [Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    // Given Graph rejects the first token (revoked early)
    let server = TestServer::start(3599, |seen, _| match seen.auth.as_deref() {
        Some("Bearer tok-1") => graph_error(401, "InvalidAuthenticationToken"),
        _ => json(200, &item_json()),
    })
    .await;
    let graph = server.client();

    let item = graph.get_item("d1", "i1").await.unwrap();

    assert!(item.is_some());
    assert_eq!(server.token_requests().len(), 2);
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn a_401_that_survives_a_fresh_token_is_unauthorized() {
    let server = TestServer::start(3599, |_, _| graph_error(401, "InvalidAuthenticationToken")).await;
    let graph = server.client();

    let err = graph.get_item("d1", "i1").await.unwrap_err();

    let code = "InvalidAuthenticationToken".to_owned();
    assert_eq!(err, GraphError::Unauthorized { code });
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn a_refused_secret_is_an_auth_error_that_names_no_secret() {
    // Given the token endpoint refuses our credentials
    let server = TestServer::start_raw(|_, _| {
        let body = json!({"error": "invalid_client",
                          "error_description": "AADSTS7000215: Invalid client secret provided."});
        json(401, &body)
    })
    .await;
    let graph = server.client();

    let err = graph.list_users().await.unwrap_err();

    assert_eq!(err, GraphError::Auth { status: 401, code: "invalid_client".into() });
    assert!(!format!("{err} {err:?}").contains(SECRET));
    assert_eq!(server.seen().len(), 1, "not retried");
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_inline() {
    // Given Graph throttles once for 1 s (below the 2 s inline limit)
    let server = TestServer::start(3599, |seen, _| match seen.nth {
        1 => reply(429, &[("retry-after", "1")], ""),
        _ => json(200, &item_json()),
    })
    .await;
    let graph = server.client();
    let started = Instant::now();

    let item = graph.get_item("d1", "i1").await.unwrap();

    assert!(item.is_some());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn a_long_retry_after_comes_back_as_throttled_at_once() {
    let server = TestServer::start(3599, |seen, _| match seen.path.as_str() {
        "/v1.0/users" => reply(429, &[("retry-after", "120")], ""),
        _ => reply(503, &[], "<html>Server Too Busy</html>"),
    })
    .await;
    let graph = server.client();
    let started = Instant::now();

    let users = graph.list_users().await.unwrap_err();
    // 503 without Retry-After means 10 s: longer than the inline limit too.
    let item = graph.get_item("d1", "i1").await.unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(users, GraphError::Throttled { retry_after: Duration::from_secs(120), status: 429 });
    assert_eq!(item, GraphError::Throttled { retry_after: Duration::from_secs(10), status: 503 });
    assert_eq!(users.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_until_the_budget_is_spent() {
    // Given a 502 then success, and separately a server that always fails
    let flaky = TestServer::start(3599, |seen, _| match seen.nth {
        1 => graph_error(502, "badGateway"),
        _ => json(200, &item_json()),
    })
    .await;
    let broken = TestServer::start(3599, |_, _| graph_error(500, "generalException")).await;

    assert!(flaky.client().get_item("d1", "i1").await.unwrap().is_some());
    let started = Instant::now();
    let err = broken.client_with(|cfg| cfg.max_retries = 2).get_item("d1", "i1").await.unwrap_err();

    assert!(matches!(err, GraphError::Transient { .. }) && err.is_retryable());
    assert_eq!(broken.graph_requests().len(), 3, "first try + 2 retries");
    assert!(started.elapsed() >= Duration::from_millis(500), "100 ms + 400 ms backoff");
}

#[tokio::test]
async fn a_connection_failure_is_transient_and_names_no_token() {
    // Given nothing listens where Graph should be (the token endpoint does answer)
    let server = TestServer::start(3599, |_, _| json(200, &item_json())).await;
    let graph = server.client_with(|cfg| {
        cfg.base_url = url::Url::parse("http://127.0.0.1:9/v1.0").unwrap();
        cfg.max_retries = 1;
    });
    let link = super::DeltaLink::new("http://127.0.0.1:9/v1.0/drives/d/root/delta?token=SECRETTOKEN");

    let err = graph.delta(&super::DeltaCursor::Link(link)).await.unwrap_err();

    assert!(matches!(err, GraphError::Transient { .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRETTOKEN"), "{err}");
}

#[tokio::test]
async fn users_are_listed_across_pages() {
    let server = TestServer::start(3599, |seen, origin| {
        let next = format!("{origin}/v1.0/users?$skiptoken=page2");
        match params(seen).get("$skiptoken").map(String::as_str) {
            None => json(
                200,
                &json!({"value": [{"id": "u1", "userPrincipalName": "a@x"}],
                                      "@odata.nextLink": next}),
            ),
            Some(_) => json(200, &json!({"value": [{"id": "u2", "displayName": "B"}]})),
        }
    })
    .await;

    let users = server.client().list_users().await.unwrap();

    let ids: Vec<_> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2"]);
    assert_eq!(users[0].user_principal_name.as_deref(), Some("a@x"));
    let first = params(&server.graph_requests()[0]);
    assert_eq!(first["$select"], "id,userPrincipalName,displayName");
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let server = TestServer::start(3599, |_, _| {
        json(200, &json!({"value": [], "@odata.nextLink": "https://evil.example/v1.0/users?x=1"}))
    })
    .await;

    let err = server.client().list_users().await.unwrap_err();

    assert!(matches!(err, GraphError::Protocol { .. }));
}

#[tokio::test]
async fn a_user_without_a_onedrive_has_no_drive() {
    let server = TestServer::start(3599, |seen, _| match seen.path.as_str() {
        "/v1.0/users/has/drive" => json(
            200,
            &json!({"id": "b!d", "driveType": "business",
                                                      "owner": {"user": {"id": "has"}}}),
        ),
        "/v1.0/users/shared-mailbox/drive" => graph_error(403, "UnknownError"),
        "/v1.0/users/blocked/drive" => graph_error(403, "accessDenied"),
        _ => graph_error(404, "ResourceNotFound"),
    })
    .await;
    let graph = server.client();

    let drive = graph.user_drive("has").await.unwrap().unwrap();
    assert_eq!(drive.id, "b!d");
    assert_eq!(drive.drive_type.as_deref(), Some("business"));
    assert_eq!(drive.owner_user_id.as_deref(), Some("has"));
    assert_eq!(graph.user_drive("unlicensed").await.unwrap(), None);
    assert_eq!(graph.user_drive("shared-mailbox").await.unwrap(), None);
    let denied = graph.user_drive("blocked").await.unwrap_err();
    assert_eq!(denied, GraphError::Forbidden { code: "accessDenied".into() });
}

/// SharePoint's budget headers: `limit` units a window, `remaining` left, reset in `reset` s.
fn budget(limit: &'static str, remaining: &'static str, reset: &'static str) -> [(&'static str, &'static str); 3] {
    [("RateLimit-Limit", limit), ("RateLimit-Remaining", remaining), ("RateLimit-Reset", reset)]
}

fn item_with(headers: &[(&str, &str)]) -> axum::response::Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    reply(200, &all, item_json().to_string())
}

#[tokio::test]
async fn an_answer_showing_the_budget_at_its_reserve_pauses_every_clone_until_the_reset() {
    // Given Graph reports 100 of 1,250 units left this minute, resetting in 40 s
    let server = TestServer::start(3599, |_, _| item_with(&budget("1250", "100", "40"))).await;
    let graph = server.client();
    let clone = graph.clone();
    assert_eq!(graph.budget_pause(), None, "nothing reported yet");

    // When a call is answered
    graph.get_item("d1", "i1").await.unwrap();

    // Then the client (and its clones) pause until the window resets
    let pause = clone.budget_pause().unwrap();
    assert!(pause <= Duration::from_secs(40) && pause > Duration::from_secs(38), "{pause:?}");
}

#[tokio::test]
async fn a_budget_with_room_left_or_unreported_or_malformed_does_not_pause() {
    // Given answers with plenty left, then none, then garbage
    let server = TestServer::start(3599, |seen, _| match seen.nth {
        1 => item_with(&budget("1250", "200", "40")),
        2 => item_with(&[]),
        _ => item_with(&budget("1250", "zero", "40")),
    })
    .await;
    let graph = server.client();

    for _ in 0..3 {
        assert!(graph.get_item("d1", "i1").await.unwrap().is_some(), "malformed headers are no error");
        assert_eq!(graph.budget_pause(), None);
    }
}

#[tokio::test]
async fn error_and_redirect_answers_report_the_budget_too() {
    // Given a 404 and a download redirect, each saying the day's budget is nearly spent
    let server = TestServer::start(3599, |seen, origin| match seen.path.as_str() {
        "/v1.0/drives/d1/items/gone" => {
            let [l, r, t] = budget("1200000", "300", "7200");
            reply(404, &[l, r, t], r#"{"error":{"code":"itemNotFound"}}"#)
        }
        "/v1.0/drives/d1/items/i1/content" => {
            let [l, r, t] = budget("1250", "5", "20");
            let target = format!("{origin}/blob/i1");
            reply(302, &[("location", target.as_str()), l, r, t], "")
        }
        _ => reply(200, &[], "bytes"),
    })
    .await;
    let graph = server.client();

    // When the 404 is answered
    assert_eq!(graph.get_item("d1", "gone").await.unwrap(), None);
    // Then the pause runs to the daily reset
    assert!(graph.budget_pause().is_some_and(|p| p > Duration::from_secs(7100)));

    // When a download is redirected, the redirect's report is the latest
    graph.download("d1", "i1", 0).await.unwrap();
    assert!(graph.budget_pause().is_some_and(|p| p <= Duration::from_secs(20)));
}

#[tokio::test]
async fn a_429_whose_budget_resets_after_its_retry_after_waits_for_the_reset() {
    // Given a 429 asking for 1 s (short enough to sleep inline) whose budget resets in 90 s
    let server = TestServer::start(3599, |_, _| {
        let [l, r, t] = budget("1250", "0", "90");
        reply(429, &[("retry-after", "1"), l, r, t], "")
    })
    .await;
    let graph = server.client();

    let err = graph.get_item("d1", "i1").await.unwrap_err();

    // Then it is not retried in a second: the caller gets the 90 s to share
    assert_eq!(err, GraphError::Throttled { retry_after: Duration::from_secs(90), status: 429 });
    assert_eq!(server.graph_requests().len(), 1);
    assert!(graph.budget_pause().is_some_and(|p| p > Duration::from_secs(85)));
}
