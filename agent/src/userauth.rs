//! The one kind of data the agent signs for a peer: an SSH user-auth request (RFC 4252 §7),
//! checked the way OpenSSH's ssh-agent checks it (`parse_userauth_request` in ssh-agent.c).
//!
//! ```text
//! string  session identifier
//! byte    SSH_MSG_USERAUTH_REQUEST (50)
//! string  user name
//! string  "ssh-connection"
//! string  "publickey" | "publickey-hostbound-v00@openssh.com"
//! boolean TRUE
//! string  public key algorithm name
//! string  public key blob
//! [string server host key]      (host-bound method only)
//! ```
//! and nothing after.

use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};

pub const SSH_MSG_USERAUTH_REQUEST: u8 = 50;
pub const METHOD_PUBLICKEY: &str = "publickey";
pub const METHOD_HOSTBOUND: &str = "publickey-hostbound-v00@openssh.com";
/// Session identifiers are exchange hashes: SHA-1, SHA-256, SHA-384 or SHA-512.
const SESSION_ID_LENGTHS: [usize; 4] = [20, 32, 48, 64];
/// Nothing genuine is larger (a 16384-bit RSA key blob is about 2 KiB).
pub const MAX_REQUEST_BYTES: usize = 16 << 10;

/// A parsed, checked user-auth request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuthRequest {
    pub user: String,
    pub method: String,
    pub algorithm: String,
    /// The hash an RSA signature must use (None for ed25519).
    pub hash: Option<HashAlg>,
    /// The server's host key, for the host-bound method.
    pub host_key: Option<PublicKey>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.0.split_first().ok_or("truncated")?;
        self.0 = rest;
        Ok(b)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        if self.0.len() < 4 {
            return Err("truncated".into());
        }
        let len = u32::from_be_bytes(self.0[..4].try_into().expect("4 bytes")) as usize;
        let rest = &self.0[4..];
        if len > rest.len() {
            return Err("a length runs past the end".into());
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(s)
    }

    fn text(&mut self, what: &str) -> Result<&'a str, String> {
        let b = self.bytes()?;
        if b.contains(&0) {
            return Err(format!("{what} contains a NUL byte"));
        }
        std::str::from_utf8(b).map_err(|_| format!("{what} is not UTF-8"))
    }
}

/// The signature algorithm names that go with `key`, and the hash each implies.
pub fn algorithm_hash(key: &PublicKey, name: &str) -> Result<Option<HashAlg>, String> {
    match (key.algorithm(), name) {
        (Algorithm::Ed25519, "ssh-ed25519") => Ok(None),
        (Algorithm::Rsa { .. }, "rsa-sha2-512") => Ok(Some(HashAlg::Sha512)),
        (Algorithm::Rsa { .. }, "rsa-sha2-256") => Ok(Some(HashAlg::Sha256)),
        (Algorithm::Rsa { .. }, "ssh-rsa") => {
            Err("ssh-rsa (SHA-1) signatures are refused; use rsa-sha2-512".into())
        }
        (alg, _) => Err(format!(
            "algorithm {name:?} does not match the agent's {} key",
            alg.as_str()
        )),
    }
}

/// Parse `data` and check it is a request to log in with `key`. The reason on refusal is
/// safe to show and to audit (it never contains the data).
pub fn parse(data: &[u8], key: &PublicKey, key_blob: &[u8]) -> Result<UserAuthRequest, String> {
    if data.len() > MAX_REQUEST_BYTES {
        return Err(format!("{} bytes is too large", data.len()));
    }
    let mut r = Reader(data);
    let session = r.bytes().map_err(|e| format!("session id: {e}"))?;
    if !SESSION_ID_LENGTHS.contains(&session.len()) {
        return Err(format!(
            "not a user-auth request (session id of {} bytes)",
            session.len()
        ));
    }
    let t = r.u8()?;
    if t != SSH_MSG_USERAUTH_REQUEST {
        return Err(format!(
            "not a user-auth request (message type {t}, not {SSH_MSG_USERAUTH_REQUEST})"
        ));
    }
    let user = r.text("user")?.to_owned();
    if user.is_empty() {
        return Err("empty user name".into());
    }
    let service = r.text("service")?;
    if service != "ssh-connection" {
        return Err(format!("service {service:?} is not \"ssh-connection\""));
    }
    let method = r.text("method")?.to_owned();
    if method != METHOD_PUBLICKEY && method != METHOD_HOSTBOUND {
        return Err(format!("method {method:?} is not publickey"));
    }
    if r.u8()? != 1 {
        return Err("the signature flag is not TRUE".into());
    }
    let algorithm = r.text("algorithm")?.to_owned();
    let hash = algorithm_hash(key, &algorithm)?;
    let blob = r.bytes()?;
    if blob != key_blob {
        return Err("the request is for another key than the agent's".into());
    }
    let host_key = if method == METHOD_HOSTBOUND {
        let hk = r.bytes()?;
        Some(PublicKey::from_bytes(hk).map_err(|e| format!("host key: {e}"))?)
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(format!("{} trailing bytes", r.0.len()));
    }
    Ok(UserAuthRequest {
        user,
        method,
        algorithm,
        hash,
        host_key,
    })
}

/// Build a request as an SSH client does (for tests and the benchmark).
pub fn build(session_id: &[u8], user: &str, algorithm: &str, key_blob: &[u8]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    put(&mut out, session_id);
    out.push(SSH_MSG_USERAUTH_REQUEST);
    put(&mut out, user.as_bytes());
    put(&mut out, b"ssh-connection");
    put(&mut out, METHOD_PUBLICKEY.as_bytes());
    out.push(1);
    put(&mut out, algorithm.as_bytes());
    put(&mut out, key_blob);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::PrivateKey;

    fn key() -> (PublicKey, Vec<u8>) {
        let k = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let blob = k.public_key().to_bytes().unwrap();
        (k.public_key().clone(), blob)
    }

    #[test]
    fn accepts_a_genuine_request_and_refuses_variations() {
        let (pk, blob) = key();
        let good = build(&[7; 32], "alice", "ssh-ed25519", &blob);
        let req = parse(&good, &pk, &blob).unwrap();
        assert_eq!(req.user, "alice");
        assert_eq!(req.hash, None);

        let mut trailing = good.clone();
        trailing.push(0);
        assert!(
            parse(&trailing, &pk, &blob)
                .unwrap_err()
                .contains("trailing")
        );
        assert!(parse(&good[..good.len() - 1], &pk, &blob).is_err());
        assert!(parse(&build(&[7; 31], "alice", "ssh-ed25519", &blob), &pk, &blob).is_err());
        assert!(parse(&build(&[7; 32], "alice", "ssh-rsa", &blob), &pk, &blob).is_err());
        let (_, other) = key();
        assert!(parse(&build(&[7; 32], "alice", "ssh-ed25519", &other), &pk, &blob).is_err());
        let mut wrong_type = good.clone();
        wrong_type[36] = 51;
        assert!(parse(&wrong_type, &pk, &blob).is_err());
        for _ in 0..1000 {
            let junk: Vec<u8> = (0..rand::random_range(0..300))
                .map(|_| rand::random())
                .collect();
            assert!(parse(&junk, &pk, &blob).is_err());
        }
    }
}
