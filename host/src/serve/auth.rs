//! Who is asking: API tokens (random 256-bit secrets, of which the store
//! keeps only the SHA-256), the tenant each belongs to, and how fast each
//! may ask.
//!
//! A tenant's token sees only its tenant's runs; anything else answers
//! exactly like something that does not exist. An operator's token sees
//! every tenant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What every token starts with, so a leaked one is recognisable (and
/// secret scanners can look for it).
pub const TOKEN_PREFIX: &str = "weir_";

/// A new token's secret, shown once, and what the store keeps of it.
pub struct NewToken {
    /// Its id, to revoke it by.
    pub id: String,
    /// `weir_` and 64 hex digits: 256 random bits.
    pub secret: String,
    /// The secret's SHA-256, hex.
    pub sha256: String,
}

/// Why a token cannot be made.
#[derive(Debug, thiserror::Error)]
#[error("the system's random source failed: {0}")]
pub struct NoRandomness(String);

/// A new random token.
pub fn new_token() -> Result<NewToken, NoRandomness> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    getrandom::fill(&mut secret).map_err(|e| NoRandomness(e.to_string()))?;
    getrandom::fill(&mut id).map_err(|e| NoRandomness(e.to_string()))?;
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    Ok(NewToken {
        id: format!("tok_{}", hex::encode(id)),
        sha256: hash(&secret),
        secret,
    })
}

/// The SHA-256 of a presented token, hex: what the store looks up. The
/// secret has 256 bits of entropy, so no slow hash is needed.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub token: String,
    /// The tenant it acts for; `None` for an operator.
    pub tenant: Option<String>,
    /// The token's label: who approves with it.
    pub label: Option<String>,
}

impl Caller {
    /// Whether the caller may see what belongs to `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// The tenant to filter a list by: the caller's, or for an operator,
    /// the one asked for.
    pub fn scope(&self, asked: Option<String>) -> Result<Option<String>, String> {
        match (&self.tenant, asked) {
            (None, asked) => Ok(asked),
            (Some(own), None) => Ok(Some(own.clone())),
            (Some(own), Some(asked)) if *own == asked => Ok(Some(asked)),
            (Some(_), Some(_)) => Err("a tenant's token lists only its own tenant's runs".into()),
        }
    }
}

/// The bearer token of an `Authorization` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Per-token token buckets: `rate` requests a second on average, up to
/// twice that at once.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Most distinct callers remembered; beyond it, full buckets are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// A limiter of `rate` requests a second per caller.
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            burst: rate * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request for `who`; `Err(wait)` when it is over its rate.
    pub fn take(&self, who: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(who) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (level, at)| *level + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (level, at) = buckets.entry(who.to_string()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *level) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash(&a.secret), a.sha256);
        assert!(!a.sha256.contains(&a.secret[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn a_tenant_sees_its_own_and_an_operator_everything() {
        let tenant = Caller {
            token: "t".into(),
            tenant: Some("acme".into()),
            label: None,
        };
        let operator = Caller {
            token: "o".into(),
            tenant: None,
            label: None,
        };
        assert!(tenant.sees("acme") && !tenant.sees("globex"));
        assert!(operator.sees("globex"));
        assert_eq!(tenant.scope(None).unwrap().as_deref(), Some("acme"));
        assert!(tenant.scope(Some("globex".into())).is_err());
        assert_eq!(operator.scope(None).unwrap(), None);
    }

    #[test]
    fn a_caller_over_its_rate_waits_and_others_do_not() {
        let limiter = RateLimiter::new(5);
        for _ in 0..10 {
            limiter.take("a").unwrap();
        }
        let wait = limiter.take("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        limiter.take("b").unwrap();
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer weir_ab")), Some("weir_ab"));
        assert_eq!(bearer(Some("bearer  weir_ab ")), Some("weir_ab"));
        assert_eq!(bearer(Some("Basic x")), None);
        assert_eq!(bearer(None), None);
    }
}
