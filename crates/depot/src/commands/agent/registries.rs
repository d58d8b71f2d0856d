//! The registries an agent may talk to: one, or several replicas that act as one registry. The
//! agent talks to one at a time; a call that finds it unreachable (no connection, a timeout, a
//! 5xx) moves on to the next, round robin, and is made again there, so the blocking query, the
//! downloads and the reports all follow the same replica. Which revision the agent waits to pass
//! is its own state, not the replica's, so a move neither misses nor repeats a revision.

use std::sync::atomic::{AtomicUsize, Ordering};

use depot_api::client::{Client, ClientError};

pub struct Registries {
    clients: Vec<Client>,
    /// The index of the replica calls go to first.
    current: AtomicUsize,
}

impl Registries {
    /// At least one client; the first is tried first.
    pub fn new(clients: Vec<Client>) -> Self {
        assert!(!clients.is_empty(), "at least one registry");
        Registries { clients, current: AtomicUsize::new(0) }
    }

    /// The URLs, in the order they are tried.
    pub fn urls(&self) -> Vec<&str> {
        self.clients.iter().map(Client::base_url).collect()
    }

    /// Makes `call` on the current replica; when that one cannot be reached, moves to the next
    /// and makes it there, once around at most. The answer is the first one that is not
    /// [`unreachable`], else the last replica's error.
    pub fn call<T>(&self, mut call: impl FnMut(&Client) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let count = self.clients.len();
        let first = self.current.load(Ordering::SeqCst) % count;
        let mut result = call(&self.clients[first]);
        for step in 1..count {
            let Err(error) = &result else { break };
            if !unreachable(error) {
                break;
            }
            let failed = (first + step - 1) % count;
            let next = (first + step) % count;
            // Another thread (the reporter, the query) may have moved already: say it once.
            if self.current.compare_exchange(failed, next, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                eprintln!(
                    "warning: {error}; moving to the registry at {}",
                    self.clients[next].base_url().trim_end_matches('/')
                );
            }
            result = call(&self.clients[next]);
        }
        result
    }
}

/// A fault of the replica or of the way to it, which another replica may not have: no
/// connection, a timeout, a 5xx (the registry's, or a proxy's page), too many requests. A refused
/// token, a missing configuration or a blob whose bytes do not match its digest would be the same
/// on every replica, and a failure to write the download locally is this host's.
pub fn unreachable(error: &ClientError) -> bool {
    match error {
        ClientError::Transport { message, .. } => !message.starts_with("cannot write the blob"),
        ClientError::Api { status, .. } => matches!(status, 408 | 429 | 500..),
        ClientError::Decode { status, .. } => *status >= 500,
        ClientError::InvalidUrl { .. } | ClientError::InvalidCertificate { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use depot_api::error::{ErrorBody, ErrorCode};

    use super::*;

    const A: &str = "http://a:7070/";
    const B: &str = "http://b:7070/";
    const C: &str = "http://c:7070/";

    fn registries(urls: &[&str]) -> Registries {
        Registries::new(urls.iter().map(|url| Client::new(url, None).unwrap()).collect())
    }

    fn refused(client: &Client) -> ClientError {
        ClientError::Transport { url: client.base_url().to_owned(), message: "Connection refused".to_owned() }
    }

    /// Calls `registries`, answering with `answer` for each replica, and returns the replicas
    /// tried in order.
    fn tried(
        registries: &Registries,
        answer: impl Fn(&Client) -> Result<(), ClientError>,
    ) -> (Vec<String>, Result<(), ClientError>) {
        let tried = RefCell::new(Vec::new());
        let result = registries.call(|client| {
            tried.borrow_mut().push(client.base_url().to_owned());
            answer(client)
        });
        (tried.into_inner(), result)
    }

    #[test]
    fn an_unreachable_replica_is_left_for_the_next_and_calls_stay_there() {
        let registries = registries(&[A, B, C]);
        let (order, result) =
            tried(&registries, |client| if client.base_url() == A { Err(refused(client)) } else { Ok(()) });
        assert_eq!(order, [A, B]);
        assert!(result.is_ok());
        // The next call goes to B at once.
        let (order, _) = tried(&registries, |_| Ok(()));
        assert_eq!(order, [B]);
        // B goes down: round robin to C, then A.
        let (order, result) =
            tried(&registries, |client| if client.base_url() == A { Ok(()) } else { Err(refused(client)) });
        assert_eq!(order, [B, C, A]);
        assert!(result.is_ok());
    }

    #[test]
    fn with_every_replica_down_each_is_tried_once_and_the_last_error_returned() {
        let registries = registries(&[A, B]);
        let (order, result) = tried(&registries, |client| Err(refused(client)));
        assert_eq!(order, [A, B]);
        assert!(result.unwrap_err().to_string().contains("http://b:7070"));
        // The caller backs off; the next attempt starts where the last one ended, and goes on round.
        let (order, _) = tried(&registries, |client| Err(refused(client)));
        assert_eq!(order, [B, A]);
    }

    #[test]
    fn an_answer_that_every_replica_would_give_is_not_a_reason_to_move() {
        let registries = registries(&[A, B]);
        let api = |status: u16, code: ErrorCode| ClientError::Api { status, body: ErrorBody::new(code, "no") };
        let decode = |status: u16| ClientError::Decode { url: A.to_owned(), status, message: "digest".to_owned() };
        let write =
            ClientError::Transport { url: A.to_owned(), message: "cannot write the blob: disk full".to_owned() };
        for error in [api(401, ErrorCode::Unauthorized), api(403, ErrorCode::Forbidden), decode(200), write] {
            let text = error.to_string();
            let error = RefCell::new(Some(error));
            let (order, result) = tried(&registries, |_| Err(error.borrow_mut().take().expect("called once")));
            assert_eq!(order, [A], "{text}");
            assert!(result.is_err());
        }
        let unavailable = api(503, ErrorCode::Internal);
        assert!(unreachable(&unavailable) && unreachable(&decode(502)), "5xx, from the registry or a proxy");
    }

    #[test]
    fn one_registry_is_called_once() {
        let registries = registries(&[A]);
        let (order, result) = tried(&registries, |client| Err(refused(client)));
        assert_eq!(order, [A]);
        assert!(result.is_err());
    }
}
