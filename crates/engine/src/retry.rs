//! Retrying requests that failed for a temporary reason.

use crate::Result;

/// Waits before each retry of a request that failed for a temporary reason.
const RETRY_DELAYS_MS: [u64; 4] = [250, 1000, 2000, 4000];

/// Runs a remote request, again after a pause when it fails for a temporary reason (a dropped
/// connection, a restarting server). Every request a backup makes is safe to repeat: chunk
/// uploads are idempotent and a commit equal to the head is accepted without a new version.
pub async fn retrying<T, F, Fut>(mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delays = RETRY_DELAYS_MS.iter();
    loop {
        match request().await {
            Err(e) if e.is_temporary() => match delays.next() {
                Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(*ms)).await,
                None => return Err(e),
            },
            other => return other,
        }
    }
}
