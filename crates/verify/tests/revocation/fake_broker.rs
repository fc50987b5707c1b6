//! A stand-in for the broker's revocation feed on loopback: the page endpoint and the event
//! stream, served from an in-test list, with switches to break them.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use writ_verify::revocation::{FeedHeartbeat, RevocationEntry, RevocationPage, RevocationTarget};

/// How the fake broker behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pages and stream work.
    Up,
    /// Every request answers 503, and open streams are closed.
    Down,
    /// Pages work; the stream answers 500.
    StreamRefused,
    /// Pages work; the stream connects and then sends nothing, ever.
    StreamSilent,
    /// Pages work; the stream answers 200 with a JSON content type.
    StreamNotEventStream,
}

/// How the page endpoint misbehaves (the stream is unaffected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFault {
    /// A body over the verifier's page limit.
    TooLarge,
    /// A body that is not JSON.
    NotJson,
    /// "More entries follow", with a `next_after` that does not move.
    CursorStands,
    /// Every page but the first of the feed (`after=0`) answers 503.
    AfterFirst,
}

#[derive(Clone)]
pub struct FakeBroker {
    state: Arc<Mutex<FeedState>>,
}

struct FeedState {
    mode: Mode,
    /// The latest entry of every id, as the broker stores them.
    entries: Vec<RevocationEntry>,
    head: u64,
    streams: Vec<UnboundedSender<Vec<u8>>>,
    /// Connected silent streams, kept so their bodies never end.
    silent: Vec<UnboundedSender<Vec<u8>>>,
    /// `Last-Event-ID` of every stream request, in order.
    last_event_ids: Vec<Option<String>>,
    page_requests: usize,
    page_fault: Option<PageFault>,
    /// Most entries per page, whatever the verifier asks for.
    max_page: usize,
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<u64>,
}

impl FakeBroker {
    /// Serves on 127.0.0.1 (a free port), with a heartbeat every `heartbeat`; answers the base
    /// URL.
    pub async fn start(heartbeat: Duration) -> (FakeBroker, String) {
        let broker = FakeBroker {
            state: Arc::new(Mutex::new(FeedState {
                mode: Mode::Up,
                entries: Vec::new(),
                head: 0,
                streams: Vec::new(),
                silent: Vec::new(),
                last_event_ids: Vec::new(),
                page_requests: 0,
                page_fault: None,
                max_page: usize::MAX,
            })),
        };
        let app = axum::Router::new()
            .route("/v1/revocations", get(page))
            .route("/v1/revocations/stream", get(stream))
            .with_state(broker.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ticking = broker.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(heartbeat).await;
                ticking.heartbeat();
            }
        });
        (broker, format!("http://{addr}"))
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap()
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut state = self.lock();
        state.mode = mode;
        if mode != Mode::Up {
            state.streams.clear();
            state.silent.clear();
        }
    }

    pub fn set_page_fault(&self, fault: Option<PageFault>) {
        self.lock().page_fault = fault;
    }

    pub fn set_max_page(&self, entries: usize) {
        self.lock().max_page = entries;
    }

    /// Records a revocation (replacing the entry with the same id) and sends it to the open
    /// streams; answers the entry.
    pub fn revoke(
        &self,
        id: &str,
        target: RevocationTarget,
        issued_until: Option<SystemTime>,
        expires_at: Option<SystemTime>,
    ) -> RevocationEntry {
        let entry = self.record(RevocationEntry {
            seq: 0,
            id: id.to_owned(),
            target,
            issued_until: issued_until.map(rfc3339),
            expires_at: expires_at.map(rfc3339),
        });
        self.send_to_streams(revocation_event(&entry).into_bytes());
        entry
    }

    /// Records a revocation without sending it on the streams (as a broker whose live channel
    /// dropped it): only the heartbeats' `head` reveals it.
    pub fn revoke_unannounced(&self, id: &str, target: RevocationTarget) -> RevocationEntry {
        self.record(RevocationEntry {
            seq: 0,
            id: id.to_owned(),
            target,
            issued_until: None,
            expires_at: None,
        })
    }

    /// Stores `entry` at the next seq, replacing the entry with the same id.
    fn record(&self, mut entry: RevocationEntry) -> RevocationEntry {
        let mut state = self.lock();
        state.head += 1;
        entry.seq = state.head;
        state.entries.retain(|held| held.id != entry.id);
        state.entries.push(entry.clone());
        entry
    }

    /// Sends raw bytes on every open stream.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.send_to_streams(bytes.to_vec());
    }

    /// Ends every open stream.
    pub fn close_streams(&self) {
        self.lock().streams.clear();
    }

    pub fn last_event_ids(&self) -> Vec<Option<String>> {
        self.lock().last_event_ids.clone()
    }

    pub fn page_requests(&self) -> usize {
        self.lock().page_requests
    }

    fn send_to_streams(&self, bytes: Vec<u8>) {
        self.lock()
            .streams
            .retain(|stream| stream.send(bytes.clone()).is_ok());
    }

    fn heartbeat(&self) {
        let mut state = self.lock();
        if state.mode != Mode::Up {
            return;
        }
        // CRLF line endings here, LF elsewhere: the verifier must read both.
        let beat = format!(
            "event: heartbeat\r\ndata: {{\"head\": {}}}\r\n\r\n",
            state.head
        );
        state
            .streams
            .retain(|stream| stream.send(beat.clone().into_bytes()).is_ok());
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn revocation_event(entry: &RevocationEntry) -> String {
    let json = serde_json::to_string(entry).unwrap();
    format!("event: revocation\nid: {}\ndata: {json}\n\n", entry.seq)
}

/// Live entries after `after`, in feed order, as the broker answers them.
fn live_after(state: &FeedState, after: u64) -> Vec<RevocationEntry> {
    let now = SystemTime::now();
    let mut live: Vec<_> = state
        .entries
        .iter()
        .filter(|entry| entry.seq > after)
        .filter(|entry| {
            let expires = entry.expires_at.as_deref().map(humantime::parse_rfc3339);
            !matches!(expires, Some(Ok(at)) if now > at)
        })
        .cloned()
        .collect();
    live.sort_by_key(|entry| entry.seq);
    live
}

async fn page(State(broker): State<FakeBroker>, Query(query): Query<PageQuery>) -> Response {
    let mut state = broker.lock();
    state.page_requests += 1;
    if state.mode == Mode::Down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let after = query.after.unwrap_or(0);
    match state.page_fault {
        None => {}
        Some(PageFault::TooLarge) => {
            let body = vec![b' '; writ_verify::revocation::MAX_REVOCATION_PAGE_BYTES + 1];
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        Some(PageFault::NotJson) => return "not json".into_response(),
        Some(PageFault::CursorStands) => {
            return axum::Json(RevocationPage {
                entries: Vec::new(),
                next_after: after,
                more: true,
            })
            .into_response();
        }
        Some(PageFault::AfterFirst) if after > 0 => {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Some(PageFault::AfterFirst) => {}
    }
    let limit = query.limit.unwrap_or(100).min(state.max_page);
    let mut entries = live_after(&state, after);
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_after = match entries.last() {
        Some(last) if more => last.seq,
        _ => state.head,
    };
    axum::Json(RevocationPage {
        entries,
        next_after,
        more,
    })
    .into_response()
}

async fn stream(
    State(broker): State<FakeBroker>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let mut state = broker.lock();
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    state.last_event_ids.push(last_event_id.clone());
    match state.mode {
        Mode::Down => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::StreamRefused => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::StreamNotEventStream => return axum::Json(FeedHeartbeat { head: 0 }).into_response(),
        Mode::Up | Mode::StreamSilent => {}
    }
    let (sender, mut receiver) = unbounded_channel::<Vec<u8>>();
    if state.mode == Mode::StreamSilent {
        state.silent.push(sender);
    } else {
        let after = last_event_id
            .and_then(|id| id.parse().ok())
            .or(query.after)
            .unwrap_or(0);
        let _ = sender.send(b": backlog follows\n".to_vec());
        for entry in live_after(&state, after) {
            let _ = sender.send(revocation_event(&entry).into_bytes());
        }
        let head = format!("event: heartbeat\ndata: {{\"head\": {}}}\n\n", state.head);
        let _ = sender.send(head.into_bytes());
        state.streams.push(sender);
    }
    let body = futures_util::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|bytes| bytes.map(Ok::<_, Infallible>))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}
