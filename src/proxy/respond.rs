//! Writing the edge's own answers (a [`EdgeError`]) to the client.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub use crate::rejection::EdgeError;

/// Write the whole answer. Errors writing mean the client went away; nothing to do.
pub async fn send(e: &EdgeError, session: &mut Session) -> pingora::Result<()> {
    let body = e.body();
    let mut h = ResponseHeader::build(e.status(), Some(4))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("cache-control", "no-store")?;
    for (k, v) in &e.headers {
        h.append_header(k.clone(), v.clone())?;
    }
    // A client too slow with its body (408) is not waited for again.
    if !session.is_body_done() && (e.status() == 408 || !drain_body(session).await) {
        // The unread rest would be taken for the next request: close after answering.
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Read and drop what is left of the request body (bounded), so the client, still sending,
/// reads our answer instead of a connection reset. Returns whether the body was finished.
async fn drain_body(session: &mut Session) -> bool {
    const LIMIT: usize = 1024 * 1024;
    const TIME: std::time::Duration = std::time::Duration::from_secs(2);
    let drain = async {
        let mut read = 0;
        while read <= LIMIT {
            match session.read_request_body().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        false
    };
    tokio::time::timeout(TIME, drain).await.unwrap_or(false)
}
