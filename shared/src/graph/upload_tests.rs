//! Upload sessions against a scripted server that keeps the bytes it is sent, so each test
//! can check the file Graph ends up with, not only the requests.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use futures::FutureExt;
use serde_json::Value;

use super::super::test_server::{Seen, TestServer, graph_error, json};
use super::*;

const UNIT: u64 = UPLOAD_FRAGMENT_UNIT as u64;
const TEMPAUTH: &str = "tempauth=PRE-AUTHENTICATED";

/// What the server does with the nth fragment PUT (1-based, across sessions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Answers this status without keeping the bytes.
    Refuse(u16),
    /// Keeps the bytes (and completes the file if they were the last), then answers this.
    KeepAndAnswer(u16),
    /// The session is gone before the bytes arrive.
    Gone,
}

#[derive(Default)]
struct Session {
    total: u64,
    data: Vec<u8>,
    gone: bool,
    /// `deferCommit`: complete bytes wait for a commit POST.
    defer: bool,
    committed: bool,
}

#[derive(Default)]
struct Drive {
    sessions: Vec<Session>,
    puts: usize,
}

struct Fixture {
    server: TestServer,
    drive: Arc<Mutex<Drive>>,
}

impl Fixture {
    async fn start(fault: impl Fn(usize) -> Fault + Send + Sync + 'static) -> Self {
        let drive = Arc::new(Mutex::new(Drive::default()));
        let state = drive.clone();
        let server =
            TestServer::start(3599, move |seen, origin| serve(&mut state.lock().unwrap(), seen, origin, &fault)).await;
        Self { server, drive }
    }

    fn session_bytes(&self, n: usize) -> Vec<u8> {
        self.drive.lock().unwrap().sessions[n].data.clone()
    }

    fn sessions(&self) -> usize {
        self.drive.lock().unwrap().sessions.len()
    }

    fn requests(&self, method: &str, path_part: &str) -> Vec<Seen> {
        let all = self.server.graph_requests();
        all.into_iter().filter(|s| s.method == method && s.path.contains(path_part)).collect()
    }
}

fn serve(drive: &mut Drive, seen: &Seen, origin: &str, fault: &dyn Fn(usize) -> Fault) -> axum::response::Response {
    if seen.path.ends_with("/createUploadSession") {
        let body = serde_json::from_str::<Value>(&seen.body).unwrap();
        let total = body["item"]["fileSize"].as_u64().unwrap();
        let defer = body["deferCommit"].as_bool().unwrap_or(false);
        drive.sessions.push(Session { total, defer, ..Session::default() });
        let url = format!("{origin}/upload/{}?{TEMPAUTH}", drive.sessions.len() - 1);
        return json(
            200,
            &json!({"uploadUrl": url, "expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]}),
        );
    }
    let Some(n) = seen.path.strip_prefix("/upload/") else { return graph_error(400, "unexpected") };
    let session = &mut drive.sessions[n.parse::<usize>().unwrap()];
    let expected = |received: usize| {
        let ranges = [format!("{received}-")];
        json!({"expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": ranges})
    };
    let committed = |total: u64| {
        json!({"id": "new-1", "name": "big.bin", "size": total, "file": {},
               "parentReference": {"driveId": "d1", "id": "p1"}})
    };
    match seen.method.as_str() {
        "POST" | "DELETE" if session.gone => graph_error(404, "itemNotFound"),
        "POST" if !seen.body.is_empty() || session.data.len() as u64 != session.total => graph_error(400, "scripted"),
        "POST" => {
            (session.gone, session.committed) = (true, true);
            json(201, &committed(session.total))
        }
        "DELETE" => {
            session.gone = true;
            axum::http::StatusCode::NO_CONTENT.into_response()
        }
        "GET" if session.gone => graph_error(404, "itemNotFound"),
        "GET" if session.data.len() as u64 == session.total => {
            json(200, &json!({"expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": []}))
        }
        "GET" => json(200, &expected(session.data.len())),
        "PUT" => {
            drive.puts += 1;
            let fault = fault(drive.puts);
            if session.gone || fault == Fault::Gone {
                session.gone = true;
                return graph_error(404, "itemNotFound");
            }
            if let Fault::Refuse(status) = fault {
                return graph_error(status, "scripted");
            }
            let range = seen.content_range.as_deref().unwrap();
            let (start, _) = super::super::drive::parse_content_range(range).unwrap();
            if start != session.data.len() as u64 {
                return graph_error(416, "invalidRange");
            }
            session.data.extend_from_slice(seen.body.as_bytes());
            let done = session.data.len() as u64 == session.total;
            if done && session.defer {
                return json(202, &json!({"expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": []}));
            }
            session.gone |= done;
            session.committed |= done;
            match fault {
                Fault::KeepAndAnswer(status) => graph_error(status, "scripted"),
                _ if done => json(201, &committed(session.total)),
                _ => json(202, &expected(session.data.len())),
            }
        }
        _ => graph_error(405, "unexpected"),
    }
}

/// A file of `size` ASCII bytes (the scripted server sees bodies as text).
fn file(size: u64) -> Arc<Vec<u8>> {
    Arc::new((0..size).map(|i| b'a' + (i % 26) as u8).collect())
}

type Source = Box<dyn FnMut(u64, usize) -> BoxFuture<'static, Result<Bytes, GraphError>> + Send>;

/// Serves ranges of `data`, recording each `(offset, len)` asked for.
fn source(data: Arc<Vec<u8>>, asked: Arc<Mutex<Vec<(u64, usize)>>>) -> Source {
    Box::new(move |offset, len| {
        asked.lock().unwrap().push((offset, len));
        let data = data.clone();
        async move { Ok(Bytes::copy_from_slice(&data[offset as usize..offset as usize + len])) }.boxed()
    })
}

async fn upload(graph: &GraphClient, data: &Arc<Vec<u8>>, conflict: ConflictBehavior) -> Result<DriveItem, GraphError> {
    upload_asked(graph, data, conflict).await.0
}

async fn upload_asked(
    graph: &GraphClient,
    data: &Arc<Vec<u8>>,
    conflict: ConflictBehavior,
) -> (Result<DriveItem, GraphError>, Vec<(u64, usize)>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let target = UploadTarget::New { parent_id: "p1", name: "big file.bin" };
    let size = data.len() as u64;
    let result = graph
        .upload_large("d1", target, size, conflict, 2 * UPLOAD_FRAGMENT_UNIT, source(data.clone(), asked.clone()))
        .await;
    let asked = asked.lock().unwrap().clone();
    (result, asked)
}

#[tokio::test]
async fn a_large_file_goes_in_whole_320_kib_fragments_then_the_remainder() {
    // Given a file of two 640 KiB fragments and 1,000 bytes more
    let fixture = Fixture::start(|_| Fault::None).await;
    let graph = fixture.server.client();
    let data = file(4 * UNIT + 1_000);

    // When it is uploaded with a fragment size that is not a multiple of 320 KiB
    let asked = Arc::new(Mutex::new(Vec::new()));
    let target = UploadTarget::New { parent_id: "p1", name: "big file.bin" };
    let item = graph
        .upload_large(
            "d1",
            target,
            data.len() as u64,
            ConflictBehavior::Rename,
            700_000,
            source(data.clone(), asked.clone()),
        )
        .await
        .unwrap();

    // Then the server holds exactly the file, sent in 640 KiB fragments and the rest
    assert_eq!((item.id.as_str(), item.drive_id.as_str()), ("new-1", "d1"));
    assert_eq!(fixture.session_bytes(0), *data);
    assert_eq!(*asked.lock().unwrap(), [(0, 655_360), (655_360, 655_360), (1_310_720, 1_000)]);
    let ranges: Vec<_> = fixture.requests("PUT", "/upload/").into_iter().map(|s| s.content_range.unwrap()).collect();
    assert_eq!(ranges, ["bytes 0-655359/1311720", "bytes 655360-1310719/1311720", "bytes 1310720-1311719/1311720"]);
    // The session was asked for by encoded name, with the conflict behaviour and the size
    let [create] = fixture.requests("POST", "createUploadSession").try_into().unwrap();
    assert_eq!(create.path, "/v1.0/drives/d1/items/p1:/big%20file.bin:/createUploadSession");
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(
        body,
        json!({"item": {"@microsoft.graph.conflictBehavior": "rename", "name": "big file.bin", "fileSize": 1_311_720}})
    );
}

#[tokio::test]
async fn the_upload_url_never_gets_the_bearer_token() {
    let fixture = Fixture::start(|_| Fault::None).await;
    let graph = fixture.server.client();

    upload(&graph, &file(3 * UNIT), ConflictBehavior::Fail).await.unwrap();
    let url = UploadUrl::new(format!("{}/upload/0?{TEMPAUTH}", fixture.server.origin));
    assert_eq!(graph.upload_session_status(&url).await.unwrap(), None, "completed sessions are gone");

    let [create] = fixture.requests("POST", "createUploadSession").try_into().unwrap();
    assert_eq!(create.auth.as_deref(), Some("Bearer tok-1"));
    let on_url: Vec<_> =
        fixture.requests("PUT", "/upload/").into_iter().chain(fixture.requests("GET", "/upload/")).collect();
    assert_eq!(on_url.len(), 3);
    assert!(on_url.iter().all(|s| s.auth.is_none() && s.query.as_deref() == Some(TEMPAUTH)));
}

#[tokio::test]
async fn a_server_error_mid_session_resumes_where_the_session_says() {
    // Given the second fragment fails with a 500 and is lost
    let fixture = Fixture::start(|nth| if nth == 2 { Fault::Refuse(500) } else { Fault::None }).await;
    let graph = fixture.server.client();
    let data = file(5 * UNIT);

    // When the file is uploaded
    let (item, asked) = upload_asked(&graph, &data, ConflictBehavior::Rename).await;

    // Then the status was asked once and the lost fragment sent again, in the same session
    item.unwrap();
    assert_eq!(fixture.session_bytes(0), *data);
    assert_eq!(fixture.sessions(), 1);
    assert_eq!(fixture.requests("GET", "/upload/").len(), 1);
    let offsets: Vec<_> = asked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [0, 2 * UNIT, 2 * UNIT, 4 * UNIT]);
}

#[tokio::test]
async fn a_fragment_kept_despite_an_error_is_not_sent_twice() {
    // Given the server keeps the second fragment but answers 502, and the third 416
    let fixture = Fixture::start(|nth| match nth {
        2 => Fault::KeepAndAnswer(502),
        3 => Fault::KeepAndAnswer(416),
        _ => Fault::None,
    })
    .await;
    let graph = fixture.server.client();
    let data = file(7 * UNIT);

    let (item, asked) = upload_asked(&graph, &data, ConflictBehavior::Replace).await;

    // Then each failure was followed by a status call and the upload went on from there
    item.unwrap();
    assert_eq!(fixture.session_bytes(0), *data);
    assert_eq!(fixture.requests("GET", "/upload/").len(), 2);
    let offsets: Vec<_> = asked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [0, 2 * UNIT, 4 * UNIT, 6 * UNIT]);
}

#[tokio::test]
async fn a_range_already_received_is_resumed_from_the_status() {
    // Given a client that resends a fragment the session already holds
    let fixture = Fixture::start(|_| Fault::None).await;
    let graph = fixture.server.client();
    let data = file(4 * UNIT);
    let target = UploadTarget::Existing { item_id: "i1" };
    let session = graph.create_upload_session("d1", target, 4 * UNIT, ConflictBehavior::Fail).await.unwrap();
    let first = Bytes::copy_from_slice(&data[..UNIT as usize]);
    graph.upload_fragment(&session.upload_url, 0, 4 * UNIT, first.clone()).await.unwrap();

    // When it is sent again
    let err = graph.upload_fragment(&session.upload_url, 0, 4 * UNIT, first).await.unwrap_err();

    // Then Graph's 416 says "ask the status", which says where to go on
    assert_eq!(err, GraphError::RangeNotSatisfiable);
    let status = graph.upload_session_status(&session.upload_url).await.unwrap().unwrap();
    assert_eq!(status.next_expected, [(UNIT, None)]);
    let rest = Bytes::copy_from_slice(&data[UNIT as usize..]);
    let done = graph.upload_fragment(&session.upload_url, UNIT, 4 * UNIT, rest).await.unwrap();
    assert!(matches!(done, FragmentResult::Completed(ref item) if item.id == "new-1"), "{done:?}");
    assert_eq!(fixture.session_bytes(0), *data);
    // A new version of an existing item: no name, always `replace`
    let create: Value = serde_json::from_str(&fixture.requests("POST", "createUploadSession")[0].body).unwrap();
    assert_eq!(create, json!({"item": {"@microsoft.graph.conflictBehavior": "replace", "fileSize": 4 * UNIT}}));
}

#[tokio::test]
async fn a_session_gone_mid_upload_is_started_over_in_a_new_one() {
    // Given the session disappears before the second fragment
    let fixture = Fixture::start(|nth| if nth == 2 { Fault::Gone } else { Fault::None }).await;
    let graph = fixture.server.client();
    let data = file(5 * UNIT);

    let (item, asked) = upload_asked(&graph, &data, ConflictBehavior::Rename).await;

    // Then a second session received the whole file from byte 0
    item.unwrap();
    assert_eq!(fixture.sessions(), 2);
    assert_eq!(fixture.session_bytes(1), *data);
    let offsets: Vec<_> = asked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [0, 2 * UNIT, 0, 2 * UNIT, 4 * UNIT]);
}

#[tokio::test]
async fn sessions_that_keep_vanishing_are_given_up_after_three_restarts() {
    let fixture = Fixture::start(|_| Fault::Gone).await;
    let graph = fixture.server.client();

    let err = upload(&graph, &file(UNIT), ConflictBehavior::Replace).await.unwrap_err();

    assert_eq!(err, GraphError::UploadSessionGone);
    assert_eq!(fixture.sessions(), 4);
}

#[tokio::test]
async fn a_lost_answer_to_the_last_fragment_is_not_blindly_uploaded_again_with_rename() {
    // Given the last fragment completes the file but its answer is a 502, and with `rename`
    // a new session would create a second copy
    let fixture = Fixture::start(|nth| if nth == 2 { Fault::KeepAndAnswer(502) } else { Fault::None }).await;
    let graph = fixture.server.client();
    let data = file(3 * UNIT);

    let err = upload(&graph, &data, ConflictBehavior::Rename).await.unwrap_err();

    // Then the caller is told the outcome is unknown, and no second session was opened
    assert!(matches!(err, GraphError::Transient { .. }) && err.to_string().contains("may exist"), "{err}");
    assert_eq!(fixture.sessions(), 1);
    assert_eq!(fixture.session_bytes(0), *data);
}

#[tokio::test]
async fn an_empty_file_goes_as_a_simple_upload() {
    let server = TestServer::start(3599, |_, _| json(201, &json!({"id": "e", "file": {}, "size": 0}))).await;
    let graph = server.client();
    let never = |_: u64, _: usize| -> BoxFuture<'static, Result<Bytes, GraphError>> { unreachable!() };

    let target = UploadTarget::New { parent_id: "p1", name: "empty.txt" };
    let item =
        graph.upload_large("d1", target, 0, ConflictBehavior::Replace, DEFAULT_FRAGMENT_SIZE, never).await.unwrap();

    assert_eq!(item.size, Some(0));
    let [put] = server.graph_requests().try_into().unwrap();
    assert_eq!((put.method.as_str(), put.path.as_str()), ("PUT", "/v1.0/drives/d1/items/p1:/empty.txt:/content"));
}

/// Sends `data` through `session` in two-unit fragments with [`GraphClient::upload_fragment`].
async fn send_all(graph: &GraphClient, session: &UploadSession, data: &[u8]) -> Vec<FragmentResult> {
    let mut answers = Vec::new();
    for (i, part) in data.chunks(2 * UPLOAD_FRAGMENT_UNIT).enumerate() {
        let start = (i * 2 * UPLOAD_FRAGMENT_UNIT) as u64;
        let body = Bytes::copy_from_slice(part);
        answers.push(graph.upload_fragment(&session.upload_url, start, data.len() as u64, body).await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_deferred_session_commits_nothing_until_asked_and_carries_the_file_dates() {
    // Given a session opened with deferCommit and the file's own dates
    let fixture = Fixture::start(|_| Fault::None).await;
    let graph = fixture.server.client();
    let data = file(3 * UNIT + 10);
    let created = "2021-03-04T05:06:07.890Z".parse().unwrap();
    let modified = "2022-01-02T03:04:05Z".parse().unwrap();
    let options = SessionOptions { defer_commit: true, created: Some(created), modified: Some(modified) };
    let target = UploadTarget::New { parent_id: "p1", name: "report.docx" };
    let session =
        graph.open_upload_session("d1", target, data.len() as u64, ConflictBehavior::Rename, &options).await.unwrap();

    // When every byte is sent
    let answers = send_all(&graph, &session, &data).await;

    // Then even the last fragment is only accepted, with nothing more expected, and the file
    // is not committed
    assert_eq!(answers.last(), Some(&FragmentResult::Accepted { next_expected: vec![] }));
    assert!(!fixture.drive.lock().unwrap().sessions[0].committed);
    let status = graph.upload_session_status(&session.upload_url).await.unwrap().unwrap();
    assert!(status.next_expected.is_empty());

    // When it is committed
    let item = graph.commit_upload(&session.upload_url, "d1").await.unwrap();

    // Then the file exists with every byte; the commit was an empty POST without the token
    assert_eq!((item.id.as_str(), item.size), ("new-1", Some(data.len() as u64)));
    assert!(fixture.drive.lock().unwrap().sessions[0].committed);
    assert_eq!(fixture.session_bytes(0), *data);
    let [commit] = fixture.requests("POST", "/upload/").try_into().unwrap();
    assert!(commit.auth.is_none() && commit.body.is_empty());
    // And the session asked for a deferred commit and the dates, to the millisecond
    let [create] = fixture.requests("POST", "createUploadSession").try_into().unwrap();
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(body["deferCommit"], json!(true));
    assert_eq!(
        body["item"]["fileSystemInfo"],
        json!({"createdDateTime": "2021-03-04T05:06:07.890Z", "lastModifiedDateTime": "2022-01-02T03:04:05.000Z"})
    );
    // A committed session is gone
    let again = graph.commit_upload(&session.upload_url, "d1").await;
    assert_eq!(again.unwrap_err(), GraphError::UploadSessionGone);
}

#[tokio::test]
async fn a_cancelled_session_is_never_committed() {
    // Given a deferred session holding every byte of a file
    let fixture = Fixture::start(|_| Fault::None).await;
    let graph = fixture.server.client();
    let data = file(UNIT);
    let options = SessionOptions { defer_commit: true, ..SessionOptions::default() };
    let target = UploadTarget::Existing { item_id: "i1" };
    let session =
        graph.open_upload_session("d1", target, data.len() as u64, ConflictBehavior::Replace, &options).await.unwrap();
    send_all(&graph, &session, &data).await;

    // When it is cancelled (twice: the second finds it gone, which is fine)
    graph.cancel_upload(&session.upload_url).await.unwrap();
    graph.cancel_upload(&session.upload_url).await.unwrap();

    // Then it cannot be committed any more and never was; no request carried the token
    assert_eq!(graph.commit_upload(&session.upload_url, "d1").await.unwrap_err(), GraphError::UploadSessionGone);
    assert!(!fixture.drive.lock().unwrap().sessions[0].committed);
    let deletes = fixture.requests("DELETE", "/upload/");
    assert_eq!(deletes.len(), 2);
    assert!(deletes.iter().all(|s| s.auth.is_none()));
    // Without dates, the session sends no fileSystemInfo
    let [create] = fixture.requests("POST", "createUploadSession").try_into().unwrap();
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(body["deferCommit"], json!(true));
    assert!(body["item"].get("fileSystemInfo").is_none());
}

#[test]
fn fragment_sizes_are_whole_units_under_60_mib() {
    assert_eq!(fragment_len(0), UPLOAD_FRAGMENT_UNIT);
    assert_eq!(fragment_len(700_000), 2 * UPLOAD_FRAGMENT_UNIT);
    assert_eq!(fragment_len(DEFAULT_FRAGMENT_SIZE), 3_276_800);
    assert_eq!(fragment_len(usize::MAX), 191 * UPLOAD_FRAGMENT_UNIT);
    assert!(fragment_len(usize::MAX) < 60 * 1024 * 1024);
}

#[test]
fn expected_ranges_parse_open_and_closed() {
    let ranges = ["12345-55232".to_owned(), "77829-".to_owned()];
    assert_eq!(parse_ranges(&ranges).unwrap(), [(12_345, Some(55_232)), (77_829, None)]);
    assert!(parse_ranges(&["abc".to_owned()]).is_err());
    assert_eq!(resume_point(&[(77_829, None), (12_345, Some(55_232))], 100_000).unwrap(), 12_345);
    assert!(resume_point(&[], 10).is_err());
}

#[test]
fn an_upload_url_is_never_printed() {
    let session = UploadSession {
        upload_url: UploadUrl::new(format!("https://tenant.sharepoint.com/up?{TEMPAUTH}")),
        expires: None,
        next_expected: vec![(0, None)],
    };
    assert!(!format!("{session:?}").contains("PRE-AUTHENTICATED"));
}
