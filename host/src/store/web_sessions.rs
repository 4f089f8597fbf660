//! The dashboard's logins: a browser's session stands for the API token it
//! logged in with, and ends with it (revoking the token logs it out).

use rusqlite::{OptionalExtension, params};

use super::serving::TokenRecord;
use super::{Store, StoreError};

/// A live session: its token and the secret its forms carry.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// The token it logged in with.
    pub token: TokenRecord,
    /// What every state-changing form must send back.
    pub csrf: String,
}

impl Store {
    /// Record a new session for token `token_id`, kept by the SHA-256 of
    /// its cookie, for `ttl_ms`. Expired sessions go at the same time.
    pub fn create_web_session(
        &self,
        sha256: &str,
        token_id: &str,
        csrf: &str,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let now = crate::events::now_ms() as i64;
        self.conn
            .execute("DELETE FROM web_sessions WHERE expires_ms <= ?1", params![now])
            .and_then(|_| {
                self.conn.execute(
                    "INSERT INTO web_sessions (sha256, token_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![sha256, token_id, csrf, now, now + ttl_ms],
                )
            })
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The live session whose cookie hashes to `sha256`, if its token
    /// still is.
    pub fn web_session(&self, sha256: &str) -> Result<Option<WebSession>, StoreError> {
        let now = crate::events::now_ms() as i64;
        self.conn
            .prepare_cached(
                "SELECT t.id, t.tenant, t.label, t.created_ms, t.revoked_ms, s.csrf
                 FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id
                 WHERE s.sha256 = ?1 AND s.expires_ms > ?2 AND t.revoked_ms IS NULL",
            )
            .and_then(|mut s| {
                s.query_row(params![sha256, now], |r| {
                    Ok(WebSession {
                        token: TokenRecord {
                            id: r.get(0)?,
                            tenant: r.get(1)?,
                            label: r.get(2)?,
                            created_ms: r.get(3)?,
                            revoked_ms: r.get(4)?,
                        },
                        csrf: r.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// End the session whose cookie hashes to `sha256`.
    pub fn end_web_session(&self, sha256: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM web_sessions WHERE sha256 = ?1", params![sha256])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The bodies of run `id`'s events of `kind`, in order.
    pub fn events_of_kind(&self, id: &str, kind: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM events WHERE run_id = ?1 AND kind = ?2 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id, kind], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_with_its_token_and_until_it_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        store
            .add_token("tok_1", Some("acme"), "h1", Some("alice"))
            .expect("token");
        store
            .create_web_session("s1", "tok_1", "c1", 60_000)
            .expect("session");
        store
            .create_web_session("old", "tok_1", "c0", -1)
            .expect("session");
        let s = store.web_session("s1").expect("read").expect("live");
        assert_eq!((s.token.tenant.as_deref(), s.csrf.as_str()), (Some("acme"), "c1"));
        assert!(store.web_session("old").expect("read").is_none(), "expired");
        assert!(store.web_session("nope").expect("read").is_none());
        store.revoke_token("tok_1").expect("revoke");
        assert!(
            store.web_session("s1").expect("read").is_none(),
            "its token was revoked"
        );
        store.end_web_session("s1").expect("end");
    }
}
