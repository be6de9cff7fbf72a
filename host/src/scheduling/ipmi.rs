//! IPMI-over-LAN power control of pool hosts, for BMCs that speak no Redfish: an IPMI 2.0
//! (RMCP+) session with the pool's `bmc-username` and `bmc-password`, raised to operator
//! privilege, then Get Chassis Status and Chassis Control. The session's handshake asks
//! for administrator as its ceiling (`ipmi-rs` fixes that), so the BMC account must be
//! allowed administrator privilege even though berth works at operator.
//!
//! This is host code, not a plugin: IPMI runs over UDP, and plugins reach the network
//! only through the sandbox's HTTP import. The session, its RAKP handshake and its
//! integrity and confidentiality are the `ipmi-rs` crate's; this module sends three
//! commands and says what their completion codes mean.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ipmi_rs::connection::{
    IpmiConnection, LogicalUnit, Message, NetFn, Request, RequestTargetAddress,
};
use ipmi_rs::rmcp::{ActivationError, Rmcp, V2_0ActivationError};

/// The power-control name a pool host gives to be switched over IPMI.
pub const IPMI: &str = "ipmi";

/// IPMI's UDP port.
const DEFAULT_PORT: u16 = 623;

/// How long one request waits for the BMC's answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// App: Set Session Privilege Level; chassis control needs operator.
const SET_SESSION_PRIVILEGE: u8 = 0x3b;
const OPERATOR: u8 = 0x03;
/// Chassis: Get Chassis Status, Chassis Control (0 = power down, 1 = power up).
const GET_CHASSIS_STATUS: u8 = 0x01;
const CHASSIS_CONTROL: u8 = 0x02;

/// Where a BMC is: `host[:port]`, or `ipmi://host[:port]`, checked when a host is
/// registered.
pub fn address(endpoint: &str) -> Result<String, String> {
    let rest = endpoint.strip_prefix("ipmi://").unwrap_or(endpoint);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!(
            "{endpoint:?} is not an IPMI address (host or host:port, as 10.0.9.5:623)"
        ));
    }
    let with_port = match rest.rsplit_once(':') {
        Some((_, port)) if !rest.ends_with(']') => {
            port.parse::<u16>()
                .map_err(|_| format!("{endpoint:?}: {port:?} is not a port"))?;
            rest.to_owned()
        }
        _ => format!("{rest}:{DEFAULT_PORT}"),
    };
    Ok(with_port)
}

/// A BMC's credentials.
pub struct Login<'a> {
    /// The user.
    pub username: &'a str,
    /// Its password (never logged).
    pub password: &'a str,
}

/// Asks the BMC at `endpoint` whether the chassis is powered on.
pub async fn powered_on(endpoint: &str, login: Login<'_>) -> Result<bool, String> {
    in_session(endpoint, login, |session| {
        let status = command(session, NetFn::Chassis, GET_CHASSIS_STATUS, vec![])?;
        // Byte 1, bit 0: power is on.
        status
            .first()
            .map(|b| b & 1 == 1)
            .ok_or_else(|| "the BMC's chassis status is empty".to_string())
    })
    .await
}

/// Asks the BMC at `endpoint` to power the chassis on (`on`) or off.
pub async fn switch(endpoint: &str, login: Login<'_>, on: bool) -> Result<(), String> {
    in_session(endpoint, login, move |session| {
        command(session, NetFn::Chassis, CHASSIS_CONTROL, vec![u8::from(on)]).map(drop)
    })
    .await
}

/// Runs `work` in a new operator session with the BMC at `endpoint`, off the async
/// workers (the exchange blocks).
async fn in_session<T: Send + 'static>(
    endpoint: &str,
    login: Login<'_>,
    work: impl FnOnce(&mut Rmcp) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (endpoint, username, password) = (
        endpoint.to_owned(),
        login.username.to_owned(),
        login.password.to_owned(),
    );
    blocking(move || work(&mut open(&endpoint, &username, &password)?)).await
}

/// Runs a blocking IPMI exchange off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the IPMI exchange stopped: {e}"))?
}

/// An RMCP+ session at operator privilege.
fn open(endpoint: &str, username: &str, password: &str) -> Result<Rmcp, String> {
    let at = address(endpoint)?;
    let remote: SocketAddr = at
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the BMC {at}: {e}"))?
        .next()
        .ok_or_else(|| format!("the BMC {at} resolves to no address"))?;
    let mut session =
        Rmcp::new(remote, TIMEOUT).map_err(|e| format!("cannot reach the BMC {at}: {e}"))?;
    session
        .activate(true, Some(username), Some(password.as_bytes()))
        .map_err(|e| activation(&at, e))?;
    command(
        &mut session,
        NetFn::App,
        SET_SESSION_PRIVILEGE,
        vec![OPERATOR],
    )
    .map_err(|e| format!("the BMC {at} would not raise the session to operator: {e}"))?;
    Ok(session)
}

/// Why a session did not open, without the credentials.
fn activation(at: &str, e: ActivationError) -> String {
    match e {
        ActivationError::V2_0(V2_0ActivationError::ServerAuthenticationFailed) => {
            format!("the BMC {at} refused the pool's bmc-username and bmc-password")
        }
        ActivationError::V2_0(V2_0ActivationError::RakpMessage2Parse(why)) => format!(
            "the BMC {at} refused the pool's bmc-username and bmc-password, or the account may not hold administrator privilege ({why:?})"
        ),
        ActivationError::PingSend(io) | ActivationError::PongReceive(io) => {
            format!("the BMC {at} does not answer: {io}")
        }
        ActivationError::BindSocket(io) => format!("cannot open a UDP socket for {at}: {io}"),
        other => format!("no IPMI 2.0 session with the BMC {at}: {other:?}"),
    }
}

/// Sends one command and answers its data, or what its completion code means.
fn command(session: &mut Rmcp, netfn: NetFn, cmd: u8, data: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut request = Request::new(
        Message::new_request(netfn, cmd, data),
        RequestTargetAddress::Bmc(LogicalUnit::Zero),
    );
    let response = session
        .send_recv(&mut request)
        .map_err(|e| format!("no answer from the BMC: {e:?}"))?;
    match response.cc() {
        0x00 => Ok(response.data().to_vec()),
        0xd4 => Err("insufficient privilege (the user needs operator or administrator)".into()),
        0xc1 => Err("the BMC does not support the command".into()),
        0xcc => Err("the BMC rejected the request's data".into()),
        0xd5 => Err("the BMC cannot do that in its present state".into()),
        cc => Err(format!("the BMC answered completion code {cc:#04x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::address;

    #[test]
    fn addresses_take_the_ipmi_port_unless_given_one() {
        assert_eq!(address("10.0.9.5").unwrap(), "10.0.9.5:623");
        assert_eq!(address("ipmi://bmc.rack1:6230").unwrap(), "bmc.rack1:6230");
        assert_eq!(address("[::1]").unwrap(), "[::1]:623");
        assert_eq!(address("[::1]:700").unwrap(), "[::1]:700");
        for bad in [
            "",
            "https://10.0.9.5/",
            "root@10.0.9.5",
            "10.0.9.5:http",
            "a/b",
        ] {
            assert!(address(bad).is_err(), "{bad}");
        }
    }
}
