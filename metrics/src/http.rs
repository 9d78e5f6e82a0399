//! `/metrics` over HTTP: a small blocking server (tiny_http) in a thread of its own, so that
//! neither the console's exporter nor a peer needs an HTTP stack of its own.

use std::{net::SocketAddr, thread::JoinHandle};

use tiny_http::{Header, Method, Response, Server};

use crate::Format;

/// Errors of the metrics server.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound (in use, not this host's, not an address).
    #[error("cannot serve metrics on {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

/// What a scrape gets.
pub enum Scrape {
    /// The figures, in the format asked for.
    Text(String),
    /// No figures to give (no peer answered yet): 503 with this reason.
    Unavailable(String),
}

/// A bound `/metrics` server, not serving yet.
pub struct MetricsServer {
    server: Server,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Bind `addr` (`HOST:PORT`; port 0: a free one, see [`MetricsServer::local_addr`]).
    pub fn bind(addr: &str) -> Result<Self, MetricsError> {
        let server = Server::http(addr).map_err(|e| MetricsError::Bind {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .expect("an HTTP server bound to a TCP address");
        Ok(Self { server, addr })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer requests in a thread of its own until the process ends: `GET /metrics` with
    /// what `scrape` returns for the format the `Accept` header asks for, anything else with
    /// 404 (or 405 for a method other than GET and HEAD).
    pub fn spawn(self, scrape: impl Fn(Format) -> Scrape + Send + 'static) -> JoinHandle<()> {
        std::thread::spawn(move || {
            for request in self.server.incoming_requests() {
                let response = answer(&request, &scrape);
                // A scraper that went away is its own business.
                let _ = request.respond(response);
            }
        })
    }
}

fn answer(
    request: &tiny_http::Request,
    scrape: &impl Fn(Format) -> Scrape,
) -> Response<std::io::Cursor<Vec<u8>>> {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return text(
            405,
            "only GET and HEAD\n".into(),
            "text/plain; charset=utf-8",
        );
    }
    let path = request.url().split('?').next().unwrap_or("");
    if path != "/metrics" {
        return text(
            404,
            "smon: the figures are at /metrics\n".into(),
            "text/plain; charset=utf-8",
        );
    }
    let accept = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept"))
        .map(|h| h.value.as_str());
    let format = Format::from_accept(accept);
    match scrape(format) {
        Scrape::Text(body) => text(200, body, format.content_type()),
        Scrape::Unavailable(why) => text(503, format!("{why}\n"), "text/plain; charset=utf-8"),
    }
}

fn text(status: u16, body: String, content_type: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}
