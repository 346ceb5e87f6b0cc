//! Live refresh: a server-sent-event stream (`/live`) that tells an open page when the
//! number of held postings or open exceptions changes. `assets/app.js` then reloads the
//! list the person is looking at (unless they are typing in a form). Without JavaScript
//! nothing is lost: the pages are complete on their own.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use crate::{Peer, Web};

/// How often the stream looks at the figures.
const EVERY: Duration = Duration::from_secs(2);

fn counts(web: &Web) -> (usize, u64) {
    let p = web.services.projections();
    let held = p.posting_count("held").unwrap_or(0);
    let open = p.exception_counts_by_category().map(|v| v.iter().map(|(_, n)| n).sum()).unwrap_or(0);
    (held, open)
}

/// `GET /live`: `event: counts`, `data: {"held":N,"exceptions":M}` whenever they change.
pub(crate) async fn stream(State(web): State<Arc<Web>>, headers: HeaderMap, peer: Peer) -> Response {
    if let Err(r) = web.me_quiet(&headers, &peer) {
        return r;
    }
    let events = stream::unfold((web, None::<(usize, u64)>), |(web, last)| async move {
        loop {
            if web.stop.load(Ordering::Relaxed) {
                return None;
            }
            let w = web.clone();
            let now = tokio::task::spawn_blocking(move || counts(&w)).await.unwrap_or_default();
            if last != Some(now) {
                let data = format!(r#"{{"held":{},"exceptions":{}}}"#, now.0, now.1);
                let event = Event::default().event("counts").data(data);
                return Some((Ok::<Event, Infallible>(event), (web, Some(now))));
            }
            tokio::time::sleep(EVERY).await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
