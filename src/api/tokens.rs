//! Auth tokens and password hashes.
//!
//! A token names its user and the auth revision it was issued at, and is
//! signed (HMAC-SHA256) with the key the cluster picked when auth was
//! enabled: every member verifies it without a Raft round trip, so a client
//! that fails over keeps its token. A token is void once its user is deleted
//! or changes password (the user's password revision is newer than the
//! token), when auth is re-enabled (new key), and `ttl` after its last use on
//! this member (or after it was issued, on a member that has not seen it).
//!
//! Passwords are hashed with argon2id (OWASP's parameters: 19 MiB, 2 passes),
//! salted from the runtime's generator; the PHC string is what is replicated.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::state::{AuthError, AuthState};

/// Tokens remembered for their sliding expiry, at most (older ones fall
/// back to their issue time).
const MAX_REMEMBERED: usize = 64 * 1024;

/// A token's last use is written down again only when older than this:
/// every other request only reads it (a shared lock, not an exclusive one
/// per request).
const REFRESH_MS: u64 = 1000;

/// Issues and verifies tokens on one member.
pub struct Tokens {
    ttl: Duration,
    /// Token signature to the wall-clock millisecond of its last use here
    /// (to within [`REFRESH_MS`]).
    last_use: RwLock<HashMap<Vec<u8>, u64>>,
}

/// The fields of a token.
struct Claims<'a> {
    user: String,
    revision: u64,
    issued_ms: u64,
    mac: &'a str,
}

fn sign(key: &[u8], user: &str, revision: u64, issued_ms: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(&(user.len() as u64).to_be_bytes());
    mac.update(user.as_bytes());
    mac.update(&revision.to_be_bytes());
    mac.update(&issued_ms.to_be_bytes());
    mac
}

/// `bytes` as lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 512 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl Tokens {
    /// Tokens that stay valid `ttl` after their last use.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, last_use: RwLock::new(HashMap::new()) }
    }

    /// A token for `user`, signed with the store's key.
    pub fn issue(&self, auth: &AuthState, user: &str) -> String {
        let now = crate::runtime::wall_clock_millis();
        let mac = sign(auth.token_key(), user, auth.revision(), now).finalize().into_bytes();
        format!("{}.{}.{}.{}", hex(user.as_bytes()), auth.revision(), now, hex(&mac))
    }

    fn parse(token: &str) -> Option<Claims<'_>> {
        let mut parts = token.split('.');
        let user = String::from_utf8(unhex(parts.next()?)?).ok()?;
        let revision = parts.next()?.parse().ok()?;
        let issued_ms = parts.next()?.parse().ok()?;
        let mac = parts.next()?;
        parts.next().is_none().then_some(Claims { user, revision, issued_ms, mac })
    }

    /// The user `token` names, if it is valid now.
    pub fn verify(&self, auth: &AuthState, token: &str) -> Result<String, AuthError> {
        let claims = Self::parse(token).ok_or(AuthError::InvalidToken)?;
        let mac = unhex(claims.mac).ok_or(AuthError::InvalidToken)?;
        sign(auth.token_key(), &claims.user, claims.revision, claims.issued_ms)
            .verify_slice(&mac)
            .map_err(|_| AuthError::InvalidToken)?;
        let user = auth.user(&claims.user).ok_or(AuthError::InvalidToken)?;
        if user.password_revision > claims.revision {
            return Err(AuthError::InvalidToken);
        }
        let now = crate::runtime::wall_clock_millis();
        let ttl = self.ttl.as_millis() as u64;
        let recent = self.last_use.read().unwrap_or_else(|e| e.into_inner()).get(&mac).copied();
        if recent.is_some_and(|used| now.saturating_sub(used) < REFRESH_MS.min(ttl)) {
            return Ok(claims.user);
        }
        let mut last_use = self.last_use.write().unwrap_or_else(|e| e.into_inner());
        let last = last_use.get(&mac).copied().unwrap_or(claims.issued_ms).max(claims.issued_ms);
        if now.saturating_sub(last) > ttl {
            last_use.remove(&mac);
            return Err(AuthError::InvalidToken);
        }
        if last_use.len() >= MAX_REMEMBERED {
            last_use.retain(|_, used| now.saturating_sub(*used) <= ttl);
            if last_use.len() >= MAX_REMEMBERED {
                last_use.clear();
            }
        }
        last_use.insert(mac, now);
        Ok(claims.user)
    }
}

/// The hasher: OWASP's parameters, except in the simulator, where a hash
/// costs wall time and no virtual time, and the smallest parameters argon2
/// takes keep the seeds fast (a hash records its parameters, and
/// verification uses the recorded ones).
fn argon2() -> argon2::Argon2<'static> {
    if !crate::runtime::simulated() {
        return argon2::Argon2::default();
    }
    let params = argon2::Params::new(argon2::Params::MIN_M_COST, 1, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The PHC string of `password` under a fresh salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    crate::runtime::rng().fill_bytes(&mut salt);
    // Encoding 16 bytes of salt and hashing with the default parameters
    // cannot fail; an empty hash (never verifiable) is the safe fallback.
    let Ok(salt) = SaltString::encode_b64(&salt) else { return String::new() };
    argon2().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()).unwrap_or_default()
}

/// Whether `password` is the one `hash` was made from.
pub fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserGrantRoleRequest};
    use crate::proto::raft::v1::{command, AuthEnable};

    fn store() -> AuthState {
        let mut auth = AuthState::default();
        let add =
            AuthUserAddRequest { name: "root".into(), hashed_password: hash_password("pw"), ..Default::default() };
        auth.apply(&command::Request::UserAdd(add)).unwrap();
        let grant = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
        auth.apply(&command::Request::UserGrantRole(grant)).unwrap();
        auth.apply(&command::Request::AuthEnable(AuthEnable { token_key: vec![1; 32] })).unwrap();
        auth
    }

    #[test]
    fn a_password_matches_its_hash_and_no_other() {
        let hash = hash_password("secret");
        assert!(password_matches("secret", &hash));
        assert!(!password_matches("Secret", &hash));
        assert!(!password_matches("secret", ""));
        assert_ne!(hash, hash_password("secret"), "salted");
    }

    #[test]
    fn a_token_names_its_user_until_the_password_changes() {
        let mut auth = store();
        let tokens = Tokens::new(Duration::from_secs(300));
        let token = tokens.issue(&auth, "root");
        assert_eq!(tokens.verify(&auth, &token), Ok("root".to_string()));
        let change = AuthUserChangePasswordRequest {
            name: "root".into(),
            hashed_password: hash_password("new"),
            ..Default::default()
        };
        auth.apply(&command::Request::UserChangePassword(change)).unwrap();
        assert_eq!(tokens.verify(&auth, &token), Err(AuthError::InvalidToken));
        assert_eq!(tokens.verify(&auth, &tokens.issue(&auth, "root")), Ok("root".to_string()));
    }

    #[test]
    fn a_forged_or_garbled_token_is_refused() {
        let auth = store();
        let tokens = Tokens::new(Duration::from_secs(300));
        let token = tokens.issue(&auth, "root");
        let forged = token.replacen(&hex(b"root"), &hex(b"toor"), 1);
        assert_eq!(tokens.verify(&auth, &forged), Err(AuthError::InvalidToken));
        for garbage in ["", "...", "zz.1.2.3", &format!("{token}.x"), "726f6f74.1.1.00"] {
            assert_eq!(tokens.verify(&auth, garbage), Err(AuthError::InvalidToken), "{garbage:?}");
        }
    }

    #[test]
    fn a_token_expires_ttl_after_its_issue() {
        let auth = store();
        let tokens = Tokens::new(Duration::from_secs(300));
        let old = crate::runtime::wall_clock_millis() - 301_000;
        let mac = sign(auth.token_key(), "root", auth.revision(), old).finalize().into_bytes();
        let token = format!("{}.{}.{}.{}", hex(b"root"), auth.revision(), old, hex(&mac));
        assert_eq!(tokens.verify(&auth, &token), Err(AuthError::InvalidToken));
    }
}
