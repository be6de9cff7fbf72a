//! The host side of the interfaces plugins import: `host` (log, clocks, config), `http`
//! and `secrets`. Each checks the plugin's settings, never trusts the guest's input, and
//! logs under the plugin's name. The behaviour is written once, over neutral types; each
//! package version's traits are implemented over it by `version_imports!`.

mod host;
mod http;
mod secrets;

use crate::state::CallState;

/// Longest log message kept from a plugin; the rest is cut, so a plugin cannot flood the
/// host's log with one call.
pub(crate) const LOG_MESSAGE_LIMIT: usize = 4096;
/// Most structured fields kept per log event.
pub(crate) const LOG_FIELDS_LIMIT: usize = 32;
/// Largest HTTP response body handed to a plugin.
pub const HTTP_RESPONSE_LIMIT: u64 = 32 * 1024 * 1024;
/// Largest HTTP request body a plugin may send.
pub const HTTP_REQUEST_LIMIT: usize = 32 * 1024 * 1024;
/// Per-request time limit when the plugin names none (or a longer one).
pub(crate) const HTTP_TIMEOUT_MS: u32 = 60_000;

/// Implements one package version's import traits over the version-neutral functions of
/// `host.rs`, `http.rs` and `secrets.rs`: the behaviour lives once; each version only
/// converts its own types.
macro_rules! version_imports {
    ($v:ident) => {
        impl crate::$v::types::Host for CallState {}

        impl crate::$v::host::Host for CallState {
            async fn log(
                &mut self,
                level: crate::$v::types::LogLevel,
                message: String,
                fields: Vec<(String, String)>,
            ) -> wasmtime::Result<()> {
                use crate::$v::types::LogLevel as L;
                let level = match level {
                    L::Trace => host::Level::Trace,
                    L::Debug => host::Level::Debug,
                    L::Info => host::Level::Info,
                    L::Warn => host::Level::Warn,
                    L::Error => host::Level::Error,
                };
                self.plugin_log(level, message, fields);
                Ok(())
            }

            async fn now(&mut self) -> wasmtime::Result<crate::$v::types::Datetime> {
                let (seconds, nanoseconds) = host::wall_clock();
                Ok(crate::$v::types::Datetime {
                    seconds,
                    nanoseconds,
                })
            }

            async fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
                Ok(self.monotonic_nanos())
            }

            async fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                Ok(self.config_value(&key))
            }

            async fn config_keys(&mut self) -> wasmtime::Result<Vec<String>> {
                Ok(self.config_key_list())
            }
        }

        impl crate::$v::http::Host for CallState {
            async fn send(
                &mut self,
                request: crate::$v::http::Request,
            ) -> wasmtime::Result<Result<crate::$v::http::Response, crate::$v::http::HttpError>>
            {
                use crate::$v::http::{HttpError as E, Method as M};
                let method = match request.method {
                    M::Get => reqwest::Method::GET,
                    M::Head => reqwest::Method::HEAD,
                    M::Post => reqwest::Method::POST,
                    M::Put => reqwest::Method::PUT,
                    M::Patch => reqwest::Method::PATCH,
                    M::Delete => reqwest::Method::DELETE,
                };
                let answer = self
                    .send_checked(http::Request {
                        method,
                        url: request.url,
                        headers: request.headers,
                        body: request.body,
                        timeout_ms: request.timeout_ms,
                    })
                    .await;
                Ok(match answer {
                    Ok(r) => Ok(crate::$v::http::Response {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    }),
                    Err(http::HttpError::NotGranted(origin)) => Err(E::NotGranted(origin)),
                    Err(http::HttpError::InvalidRequest(why)) => Err(E::InvalidRequest(why)),
                    Err(http::HttpError::Connection(why)) => Err(E::Connection(why)),
                    Err(http::HttpError::Timeout) => Err(E::Timeout),
                    Err(http::HttpError::TooLarge(limit)) => Err(E::TooLarge(limit)),
                })
            }
        }

        impl crate::$v::secrets::Host for CallState {
            async fn get(
                &mut self,
                name: String,
            ) -> wasmtime::Result<Result<String, crate::$v::secrets::SecretError>> {
                use crate::$v::secrets::SecretError as E;
                Ok(self.granted_secret(name).map_err(|refusal| match refusal {
                    secrets::Refusal::NotGranted(name) => E::NotGranted(name),
                    secrets::Refusal::NotSet(name) => E::NotSet(name),
                }))
            }
        }
    };
}

version_imports!(v0_1_0);
version_imports!(v0_2_0);
version_imports!(v0_3_0);
