//! What a search comes to, and the pure decisions behind it: which HTTP statuses are worth
//! another attempt, how long to wait before it, how a body is read.

use std::fmt;

use super::protocol::{FoundClient, SearchResponse};

/// The result of one search, as the pipeline acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The CRM knows the client: the card gets its CRM id, data and type `crm`.
    Found(FoundClient),
    /// The CRM answered and does not know the identifier (ask the client, if configured).
    NotFound,
    /// No answer: the appeal proceeds unidentified and `identification.failed` says why.
    Failed { reason: FailReason },
}

impl Answer {
    /// `found`, `not_found`, or the failure reason: the `outcome` label of the calls metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Found(_) => "found",
            Answer::NotFound => "not_found",
            Answer::Failed { reason } => reason.as_str(),
        }
    }

    pub fn failed(reason: FailReason) -> Self {
        Answer::Failed { reason }
    }
}

/// Why a search brought no answer. [`FailReason::as_str`] is stable: events and metrics carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The circuit breaker is open: the call was skipped without a request.
    CrmUnavailable,
    /// Every attempt ran out of `crm.timeout`.
    Timeout,
    /// The CRM kept answering 5xx, 429 or 408 until the retries ran out (the last status).
    ServerError { status: u16 },
    /// The CRM could not be reached (refused, reset, DNS) until the retries ran out.
    Connection { message: String },
    /// 400, 401, 403, another 4xx or a redirect: a configuration or request error; never retried.
    Rejected { status: u16 },
    /// A 2xx whose body is not a Search Client API answer.
    BadResponse { message: String },
    /// The CRM's TLS certificate was not trusted (or the handshake failed): a configuration
    /// error; never retried.
    Certificate { message: String },
}

impl FailReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailReason::CrmUnavailable => "crm_unavailable",
            FailReason::Timeout => "timeout",
            FailReason::ServerError { .. } => "server_error",
            FailReason::Connection { .. } => "connection",
            FailReason::Rejected { .. } => "rejected",
            FailReason::BadResponse { .. } => "bad_response",
            FailReason::Certificate { .. } => "certificate",
        }
    }

    /// A sentence for operators: the reason with its status or cause.
    pub fn detail(&self) -> String {
        match self {
            FailReason::CrmUnavailable => "CRM unavailable: circuit breaker open, call skipped".into(),
            FailReason::Timeout => "CRM did not answer within the timeout".into(),
            FailReason::ServerError { status } => format!("CRM answered {status} on every attempt"),
            FailReason::Connection { message } => format!("CRM unreachable: {message}"),
            FailReason::Rejected { status } => {
                format!("CRM rejected the request with {status} (check crm.url and crm.token)")
            }
            FailReason::BadResponse { message } => format!("CRM answer unreadable: {message}"),
            FailReason::Certificate { message } => {
                format!("CRM's TLS certificate refused: {message} (check crm.ca_file and crm.url)")
            }
        }
    }

    /// Whether the failure says the CRM is unhealthy, which counts towards opening the breaker.
    /// A rejection comes from a CRM that is up, so it does not.
    pub fn is_outage(&self) -> bool {
        !matches!(self, FailReason::Rejected { .. } | FailReason::CrmUnavailable)
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

/// What one HTTP attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    Answered(Answer),
    /// Transient: worth another attempt while retries remain.
    Retry(FailReason),
}

/// What a status line means before the body is read: `None` = read the body.
pub(super) fn status_verdict(status: u16) -> Option<Attempt> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(Attempt::Retry(FailReason::ServerError { status })),
        _ => Some(Attempt::Answered(Answer::failed(FailReason::Rejected { status }))),
    }
}

/// Reads a 2xx body. An unreadable one is not retried: the same CRM would send it again.
pub(super) fn read_body(body: &[u8]) -> Answer {
    let parsed = serde_json::from_slice::<SearchResponse>(body)
        .map_err(|e| e.to_string())
        .and_then(SearchResponse::into_client);
    match parsed {
        Ok(Some(client)) => Answer::Found(client),
        Ok(None) => Answer::NotFound,
        Err(message) => Answer::failed(FailReason::BadResponse { message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retried(status: u16) -> bool {
        matches!(status_verdict(status), Some(Attempt::Retry(_)))
    }

    #[test]
    fn server_errors_throttling_and_request_timeouts_are_retried() {
        assert!([500, 502, 503, 504, 429, 408].into_iter().all(retried));
    }

    #[test]
    fn auth_and_request_errors_are_final_rejections() {
        for status in [400, 401, 403, 404] {
            let verdict = status_verdict(status);
            assert_eq!(verdict, Some(Attempt::Answered(Answer::failed(FailReason::Rejected { status }))));
        }
    }

    #[test]
    fn a_success_status_means_the_body_is_read() {
        assert_eq!(status_verdict(200), None);
    }

    #[test]
    fn bodies_become_found_not_found_or_bad_response() {
        assert_eq!(read_body(br#"{"found": false}"#), Answer::NotFound);
        assert!(
            matches!(read_body(br#"{"found": true, "client": {"crm_id": "C"}}"#), Answer::Found(c) if c.crm_id == "C")
        );
        assert_eq!(read_body(b"<html>").outcome(), "bad_response");
        assert_eq!(read_body(br#"{"found": true}"#).outcome(), "bad_response");
    }

    #[test]
    fn reasons_have_stable_names_and_a_rejection_is_no_outage() {
        let names: Vec<&str> = [
            FailReason::CrmUnavailable,
            FailReason::Timeout,
            FailReason::ServerError { status: 503 },
            FailReason::Connection { message: "refused".into() },
            FailReason::Rejected { status: 401 },
            FailReason::BadResponse { message: "x".into() },
        ]
        .iter()
        .map(FailReason::as_str)
        .collect();
        assert_eq!(
            names,
            ["crm_unavailable", "timeout", "server_error", "connection", "rejected", "bad_response"]
        );
        assert!(!FailReason::Rejected { status: 401 }.is_outage());
        assert!(FailReason::ServerError { status: 503 }.is_outage());
    }
}
